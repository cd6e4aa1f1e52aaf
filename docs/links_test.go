package docs

import (
	"bytes"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's root: the parent of this package.
const repoRoot = ".."

// maxScanned bounds the files the tests read; larger files (binaries, data)
// are not documentation or source.
const maxScanned = 1 << 20

// skipDir reports whether a directory holds no file of the repository's own
// (version control, build output, data directories of `sluice dev`).
func skipDir(rel string, name string) bool {
	if rel == "." {
		return false
	}
	return strings.HasPrefix(name, ".") || name == "bin" || name == "node_modules"
}

// repoFiles returns the slash-separated paths, relative to the repository
// root, of the regular files for which keep returns true.
func repoFiles(t *testing.T, keep func(rel string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(rel, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && keep(rel) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk repository: %v", err)
	}
	return out
}

// link is one link target found in a Markdown file.
type link struct {
	line   int
	target string
}

var (
	// inlineLink matches [text](target) and ![alt](target), with an optional
	// "title" after the target.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refLink matches a reference definition: [label]: target
	refLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	// codeSpan matches inline code, whose text is not a link.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
)

// mdLinks returns the link targets of a Markdown document, outside fenced
// code blocks and inline code.
func mdLinks(src []byte) []link {
	var out []link
	for i, line := range proseLines(src) {
		if m := refLink.FindStringSubmatch(line); m != nil {
			out = append(out, link{i + 1, m[1]})
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			out = append(out, link{i + 1, m[1]})
		}
	}
	return out
}

// proseLines returns the lines of a Markdown document outside fenced code
// blocks (``` or ~~~), with their 0-based line numbers.
func proseLines(src []byte) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		fence := ""
		for i, line := range strings.Split(string(src), "\n") {
			trim := strings.TrimSpace(line)
			if fence != "" {
				if strings.HasPrefix(trim, fence) {
					fence = ""
				}
				continue
			}
			if strings.HasPrefix(trim, "```") || strings.HasPrefix(trim, "~~~") {
				fence = trim[:3]
				continue
			}
			if !yield(i, line) {
				return
			}
		}
	}
}

// anchors returns the anchors GitHub generates for the headings of a
// Markdown document: lower case, punctuation dropped, spaces as dashes, and
// -1, -2, ... appended to repeated ones.
func anchors(src []byte) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(src) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if len(text) == len(line) || len(line)-len(text) > 6 || (text != "" && text[0] != ' ') {
			continue
		}
		slug := slugify(strings.TrimSpace(text))
		if n, ok := seen[slug]; ok {
			seen[slug] = n + 1
			out[slug+"-"+itoa(n+1)] = true
			continue
		}
		seen[slug] = 0
		out[slug] = true
	}
	return out
}

func slugify(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// external reports whether a link target leaves the repository by scheme
// (web pages, mail); such links are not checked.
func external(target string) bool {
	for _, p := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(strings.ToLower(target), p) {
			return true
		}
	}
	return false
}

// TestMarkdownLinksResolve checks every relative link of every Markdown file
// in the repository: the target exists inside the repository, and an anchor
// names a heading of the target Markdown file.
func TestMarkdownLinksResolve(t *testing.T) {
	files := repoFiles(t, func(rel string) bool { return strings.HasSuffix(rel, ".md") })
	if len(files) < 2 {
		t.Fatalf("found %d Markdown files; is %s the repository root?", len(files), repoRoot)
	}
	anchorCache := map[string]map[string]bool{}
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := anchorCache[rel]; ok {
			return a, nil
		}
		src, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		a := anchors(src)
		anchorCache[rel] = a
		return a, nil
	}
	checked := 0
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range mdLinks(src) {
			if external(l.target) {
				continue
			}
			checked++
			target, frag, _ := strings.Cut(l.target, "#")
			rel := f
			if target != "" {
				if strings.HasPrefix(target, "/") {
					t.Errorf("%s:%d: link %q is absolute; use a path relative to the file", f, l.line, l.target)
					continue
				}
				rel = path.Clean(path.Join(path.Dir(f), target))
				if rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("%s:%d: link %q leaves the repository", f, l.line, l.target)
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(rel))); err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", f, l.line, l.target, rel)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(rel, ".md") {
				continue
			}
			a, err := anchorsOf(rel)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", f, l.line, l.target, err)
				continue
			}
			if !a[frag] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", f, l.line, l.target, rel, frag)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the link parser is broken")
	}
}

// TestNoReferenceOutsideRepository checks that no file outside .ci/ names
// the specification drafts kept beside the repository: documentation and
// comments must point at files a user of the repository has (docs/).
func TestNoReferenceOutsideRepository(t *testing.T) {
	// Built from parts so that this file does not match itself.
	needles := []*regexp.Regexp{
		regexp.MustCompile(`\.\./` + `shared\b`),
		regexp.MustCompile(`\bshared/` + `spec\b`),
		regexp.MustCompile(`\bspec/` + `[a-z0-9-]+\.md\b`),
	}
	files := repoFiles(t, func(string) bool { return true })
	scanned := 0
	for _, f := range files {
		p := filepath.Join(repoRoot, filepath.FromSlash(f))
		if st, err := os.Stat(p); err != nil || st.Size() > maxScanned {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(src, 0) >= 0 {
			continue // binary
		}
		scanned++
		for _, n := range needles {
			for _, loc := range n.FindAllIndex(src, -1) {
				line := 1 + bytes.Count(src[:loc[0]], []byte("\n"))
				t.Errorf("%s:%d: refers to %q, which is not part of the repository", f, line, src[loc[0]:loc[1]])
			}
		}
	}
	if scanned < 10 {
		t.Fatalf("scanned only %d files; is %s the repository root?", scanned, repoRoot)
	}
}

// TestLinkParsing pins the parser the two tests above rely on.
func TestLinkParsing(t *testing.T) {
	src := []byte("# Title\n" +
		"See [a](a.md), ![img](img/x.png \"t\") and [b](b.md#Part-two).\n" +
		"`[not](code.md)` is code.\n" +
		"```\n[fenced](fenced.md)\n```\n" +
		"[ref]: ref.md\n" +
		"## Part `two`\n## Part two\n### Flags: --x, -y!\n")
	var got []string
	for _, l := range mdLinks(src) {
		got = append(got, l.target)
	}
	want := []string{"a.md", "img/x.png", "b.md#Part-two", "ref.md"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mdLinks = %q, want %q", got, want)
	}
	a := anchors(src)
	for _, w := range []string{"title", "part-two", "part-two-1", "flags---x--y"} {
		if !a[w] {
			t.Errorf("anchors lack %q: %v", w, a)
		}
	}
	if a["part-two-2"] {
		t.Errorf("anchors has an extra duplicate: %v", a)
	}
}
