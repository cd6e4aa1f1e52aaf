package configlog

import (
	"context"
	"slices"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

const acmeSvc = "2555417777820"

// scopedEnv is a projection over a MemLog (whose positions count records)
// holding the full test configuration.
func scopedEnv(t *testing.T) (*Projection, *MemLog) {
	t.Helper()
	l := NewMemLog()
	t.Cleanup(func() { l.Close() })
	p := startProjection(t, l, nil)
	if err := p.Apply(ctx5(t), fullDoc(t)); err != nil {
		t.Fatal(err)
	}
	return p, l
}

// TestUpdateInScope: changes to one application or to a plan are checked
// and written in their scope: one record each, applied without a rebuild,
// and seen by the catalog; a change beyond the scope (a service's
// settings) still works, through a rebuild.
func TestUpdateInScope(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		scope   Scope
		change  func(d *catalog.Document) error
		records int
		rebuild bool
		check   func(s *catalog.Snapshot) bool
	}{
		{"suspend an application", Scope{"acme", acmeSvc, []string{"app1"}}, func(d *catalog.Document) error {
			d.Tenant("acme").Service(acmeSvc).App("app1").State = catalog.StateSuspended
			return nil
		}, 1, false, func(s *catalog.Snapshot) bool { return s.Services[acmeSvc].App("app1").State == catalog.Suspended }},
		{"create an application", Scope{"acme", acmeSvc, []string{"app9"}}, func(d *catalog.Document) error {
			s := d.Tenant("acme").Service(acmeSvc)
			s.Applications = append(s.Applications, catalog.AppSpec{ID: "app9", Plan: "free", UserKey: "uk-9"})
			return nil
		}, 1, false, func(s *catalog.Snapshot) bool { return s.Services[acmeSvc].AppByUserKey([]byte("uk-9")).ID == "app9" }},
		{"delete an application", Scope{"acme", acmeSvc, []string{"app2"}}, func(d *catalog.Document) error {
			s := d.Tenant("acme").Service(acmeSvc)
			s.Applications = slices.DeleteFunc(s.Applications, func(a catalog.AppSpec) bool { return a.ID == "app2" })
			return nil
		}, 1, false, func(s *catalog.Snapshot) bool {
			return s.Services[acmeSvc].App("app2") == nil && s.Services[acmeSvc].AppByUserKey([]byte("uk-2")) == nil
		}},
		{"change a plan's limit", Scope{"acme", acmeSvc, nil}, func(d *catalog.Document) error {
			d.Tenant("acme").Service(acmeSvc).Plan("basic").Limits[0].Max = 7
			return nil
		}, 1, false, func(s *catalog.Snapshot) bool {
			a := s.Services[acmeSvc].App("app1")
			return a.Plan() == s.Services[acmeSvc].Plan("basic") && a.Plan().Limits[0].Max == 7
		}},
		{"change a service's settings", Scope{"acme", acmeSvc, nil}, func(d *catalog.Document) error {
			d.Tenant("acme").Service(acmeSvc).ReferrerFiltersRequired = true
			return nil
		}, 1, true, func(s *catalog.Snapshot) bool {
			return s.Services[acmeSvc].ReferrerFiltersRequired && s.Services[acmeSvc].App("app1") != nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, l := scopedEnv(t)
			before, _ := l.End(ctx)
			rebuilds := p.rebuilds
			if err := p.UpdateIn(ctx5(t), tc.scope, tc.change); err != nil {
				t.Fatal(err)
			}
			after, _ := l.End(ctx)
			if int(after-before) != tc.records {
				t.Errorf("%d records appended, want %d", after-before, tc.records)
			}
			if rebuilt := p.rebuilds != rebuilds; rebuilt != tc.rebuild {
				t.Errorf("rebuilt %v, want %v", rebuilt, tc.rebuild)
			}
			if !tc.check(p.Store().Load()) {
				t.Error("the catalog does not show the change")
			}
		})
	}
}

// TestUpdateInRefusesAsUpdate: a change that the scope cannot judge alone
// (it collides with an application outside it, or deletes a plan one uses)
// is refused with the very problems Update reports, and writes nothing.
func TestUpdateInRefusesAsUpdate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		scope  Scope
		change func(d *catalog.Document) error
	}{
		{"user_key of another application", Scope{"acme", acmeSvc, []string{"app1"}}, func(d *catalog.Document) error {
			d.Tenant("acme").Service(acmeSvc).App("app1").UserKey = "uk-2"
			return nil
		}},
		{"plan in use by another application", Scope{"acme", acmeSvc, nil}, func(d *catalog.Document) error {
			s := d.Tenant("acme").Service(acmeSvc)
			s.Plans = slices.DeleteFunc(s.Plans, func(p catalog.PlanSpec) bool { return p.ID == "free" })
			return nil
		}},
		{"unknown plan in scope", Scope{"acme", acmeSvc, []string{"app1"}}, func(d *catalog.Document) error {
			d.Tenant("acme").Service(acmeSvc).App("app1").Plan = "gold"
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, l := scopedEnv(t)
			want := p.Update(ctx5(t), tc.change)
			if want == nil {
				t.Fatal("Update accepted the change: the case tests nothing")
			}
			before, _ := l.End(ctx)
			got := p.UpdateIn(ctx5(t), tc.scope, tc.change)
			if got == nil || got.Error() != want.Error() {
				t.Errorf("UpdateIn: %v\nwant %v", got, want)
			}
			if after, _ := l.End(ctx); after != before {
				t.Errorf("%d records written", after-before)
			}
		})
	}
}
