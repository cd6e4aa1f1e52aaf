package catalog

import (
	"bytes"
	"testing"
)

// benchDocument is a document of 200,000 applications in the given format.
func benchDocument(b *testing.B, f Format) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := bigDocument(200_000).Write(&buf, f); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkParseYAML200kApps(b *testing.B) {
	data := benchDocument(b, FormatYAML)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, FormatYAML); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseJSON200kApps(b *testing.B) {
	data := benchDocument(b, FormatJSON)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, FormatJSON); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClone200kApps(b *testing.B) {
	doc := bigDocument(200_000)
	b.ReportAllocs()
	for b.Loop() {
		_ = doc.Clone()
	}
}

func BenchmarkValidate200kApps(b *testing.B) {
	doc := bigDocument(200_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := doc.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
