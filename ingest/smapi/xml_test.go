package smapi

import (
	"testing"
	"time"
)

func TestAppendTimeMatchesLayout(t *testing.T) {
	for _, sec := range []int64{0, 1, 59, 86399, 951782400, 1779033600, fixedNow.Unix(), 253402300799, -62135596800, 253402300800, -1} {
		want := time.Unix(sec, 0).UTC().Format(TimeLayout)
		if got := string(appendTime(nil, sec)); got != want {
			t.Errorf("appendTime(%d) = %q, want %q", sec, got, want)
		}
	}
}

func TestEscapeTail(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{`a<b>&"c"`, `a&lt;b&gt;&amp;"c"`},
		{"\x01x", "\uFFFDx"},
		{"&&", "&amp;&amp;"},
	} {
		got := string(escapeTail([]byte("pre:"+c.in), 4))
		if got != "pre:"+c.want {
			t.Errorf("escapeTail(%q) = %q, want %q", c.in, got, "pre:"+c.want)
		}
	}
}
