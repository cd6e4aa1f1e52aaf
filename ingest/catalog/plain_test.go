package catalog

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestPlainValidAgreesWithFullChecks: validating applications with the
// shortcut for plain ones reports exactly the problems the full checks
// report, over random applications near the rules' edges.
func TestPlainValidAgreesWithFullChecks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	list := func(xs ...string) []string {
		var out []string
		for range r.IntN(4) {
			out = append(out, pick(xs...))
		}
		return out
	}
	plans := planInfo{"p": true, "q": true}
	shortcuts := 0
	for range 3000 {
		mode := pick(ModeUserKey, ModeAppID, ModeOAuth, "")
		var as []AppSpec
		for range 1 + r.IntN(5) {
			if r.IntN(2) == 0 { // a plain one, often a duplicate of another
				a := AppSpec{ID: pick("a", "b", "c"), Plan: pick("p", "q"), State: pick("", StateActive, StateSuspended),
					ReferrerFilters: list("*.example.com", "localhost:8080")}
				if mode == ModeUserKey {
					a.UserKey = pick("u1", "u2", "u3")
				} else {
					a.Keys = list("k1", "k2")
				}
				as = append(as, a)
				continue
			}
			as = append(as, AppSpec{
				ID:              pick("a", "b", "c", "", "d e", string(make([]byte, 300))),
				Plan:            pick("p", "q", "", "x"),
				UserKey:         pick("", "u1", "u2", "u 3"),
				Keys:            list("k1", "k2", "", "k 3"),
				ReferrerFilters: list("*.example.com", "localhost:8080", "bad filter", ""),
				RedirectURL:     pick("", "", "https://example.com/cb", "nope"),
				State:           pick("", StateActive, StateSuspended, "gone"),
			})
		}
		for i := range as {
			if plainValid(&as[i], plans, mode, map[string]int{}, map[string]int{}) {
				shortcuts++
			}
		}
		fast := &validator{}
		fast.apps("s", as, plans, mode)
		fullChecksOnly = true
		full := &validator{}
		full.apps("s", as, plans, mode)
		fullChecksOnly = false
		if !reflect.DeepEqual(fast.probs, full.probs) {
			t.Fatalf("mode %q apps %+v:\nwith shortcut %v\nfull checks   %v", mode, as, fast.probs, full.probs)
		}
	}
	if shortcuts < 100 {
		t.Errorf("only %d plain applications: the generator does not exercise the shortcut", shortcuts)
	}
}
