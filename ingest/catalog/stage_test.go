package catalog

import (
	"errors"
	"testing"
)

// TestStagePutPlan: a plan change is invisible until Publish, then every
// application on the plan sees the new version through the App it already
// had (nothing is republished per application), and the others see theirs.
func TestStagePutPlan(t *testing.T) {
	snap, keys := benchService(t, 300)
	svc := snap.Services["s"]
	on, off := svc.App("app-0000000"), svc.App("app-0000001") // plans p0 and p1
	maxOf := func(a *App) int64 { return a.Plan().Limits[0].Max }

	st := NewStage(snap, keys)
	if err := st.PutPlan("t", "s", &PlanSpec{ID: "p0", Name: "zero", Limits: []LimitSpec{{Metric: "search", Period: "hour", Max: 7}}}); err != nil {
		t.Fatal(err)
	}
	if maxOf(on) != 1000 || svc.Plan("p0").Name != "" {
		t.Fatalf("a staged plan change is visible before Publish: %+v", on.Plan())
	}
	st.Publish()
	p0 := svc.Plan("p0")
	if on.Plan() != p0 || svc.App("app-0000000") != on || p0.Name != "zero" || len(p0.Limits) != 1 || maxOf(on) != 7 {
		t.Fatalf("after Publish: app on p0 sees %+v (same App %v), service's p0 %+v", on.Plan(), svc.App("app-0000000") == on, p0)
	}
	n := 0
	for _, a := range svc.Apps().All() {
		if a.Plan().ID == "p0" {
			n++
			if a.Plan() != p0 {
				t.Fatalf("%s on p0 sees %p, want %p", a.ID, a.Plan(), p0)
			}
		}
	}
	if n != 100 {
		t.Fatalf("%d applications on p0, want 100", n)
	}
	if maxOf(off) != 1000 || off.Plan().ID != "p1" {
		t.Fatalf("an application on another plan sees %+v", off.Plan())
	}

	// A dropped Stage changes nothing; a plan with applications cannot go.
	st = NewStage(snap, keys)
	if err := st.PutPlan("t", "s", &PlanSpec{ID: "p0", Limits: []LimitSpec{{Metric: "hits", Period: "day", Max: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeletePlan("t", "s", "p1"); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("deleting a plan with applications: %v, want ErrNotStaged", err)
	}
	if maxOf(on) != 7 {
		t.Fatalf("an unpublished Stage changed the plan: %+v", on.Plan())
	}

	// A new plan, an application moved onto it, and a change to it, in one
	// Stage.
	st = NewStage(snap, keys)
	for _, max := range []int64{3, 4} {
		if err := st.PutPlan("t", "s", &PlanSpec{ID: "p9", Limits: []LimitSpec{{Metric: "hits", Period: "minute", Max: max}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutApp("t", "s", &AppSpec{ID: "app-0000000", Plan: "p9", UserKey: "uk000000000000000000000000000000"}); err != nil {
		t.Fatal(err)
	}
	st.Publish()
	moved := svc.App("app-0000000")
	if moved.Plan() != svc.Plan("p9") || maxOf(moved) != 4 || on.Plan() != p0 {
		t.Fatalf("moved application sees %+v; the App it replaced sees %+v", moved.Plan(), on.Plan())
	}
	st = NewStage(snap, keys)
	if err := st.DeletePlan("t", "s", "p0"); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("deleting p0 with applications left on it: %v", err)
	}
}
