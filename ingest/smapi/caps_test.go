package smapi

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// halfCaps lets a region admit half of each strict limit's max, and counts
// the decisions begun and not yet done.
type halfCaps struct{ open *int }

func (c halfCaps) Cap(dst []limiter.Limit, app *catalog.App, _ time.Time) ([]limiter.Limit, uint32) {
	for _, i := range app.Plan().Strict {
		dst[i].Max /= 2
	}
	*c.open++
	return dst, 7
}

func (c halfCaps) Done(token uint32) {
	if token == 7 {
		*c.open--
	}
}

// TestCapsDecideAnswersShowPlan: the limiter checks a strict limit against
// the region's share Caps gives, the answer still shows the plan's max, and
// limits that are not strict keep theirs.
func TestCapsDecideAnswersShowPlan(t *testing.T) {
	doc := testDocument()
	doc.Tenants[0].Services[0].Plans[0].Limits[0].Strict = true // hits per day, max 100
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.store.Swap(snap)
	open := 0
	e.srv.caps = halfCaps{&open}
	defer func() {
		if open != 0 {
			t.Errorf("%d decisions begun and not done", open)
		}
	}()
	for i, c := range []struct {
		hits string
		code int
	}{{"25", 200}, {"25", 200}, {"1", 409}} {
		resp := e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]="+c.hits, "")
		if resp.StatusCode() != c.code {
			t.Fatalf("call %d: status %d, want %d: %s", i, resp.StatusCode(), c.code, resp.Body())
		}
		if i == 2 {
			body := string(resp.Body())
			want := `period="day">` // then the window, max and current
			j := strings.Index(body, want)
			if j < 0 || !strings.Contains(body[j:], "<max_value>100</max_value><current_value>50</current_value>") {
				t.Errorf("the answer does not show the plan's max 100 and the usage 50: %s", body)
			}
			if !strings.Contains(body, "<max_value>1000</max_value><current_value>50</current_value>") {
				t.Errorf("the eternity limit (not strict) changed: %s", body)
			}
		}
	}
}
