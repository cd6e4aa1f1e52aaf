package admin

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// TestServiceAlertThresholds: a service's alert thresholds are read and
// written with the service, validated, and reach the snapshot sorted; null
// brings back the defaults.
func TestServiceAlertThresholds(t *testing.T) {
	e := newEnv(t)
	path := v1 + "/services/" + acmeSvc
	if m := e.expect("GET", path, acmeTok, "", 200, "").json(t); fmt.Sprint(m["alert_thresholds"]) != "[50 100 200]" {
		t.Errorf("GET alert_thresholds = %v", m["alert_thresholds"])
	}
	e.expect("PUT", path, acmeTok, `{"alert_thresholds":[120,80]}`, 200, "")
	if got := e.proj.Store().Load().Services[acmeSvc].AlertThresholds; fmt.Sprint(got) != "[80 120]" {
		t.Errorf("snapshot thresholds %v, want [80 120]", got)
	}
	r := e.expect("PUT", path, acmeTok, `{"alert_thresholds":[0,80,80]}`, 422, "invalid_config")
	want := []string{
		"services[0].alert_thresholds[0]: threshold 0 out of range: want a percentage from 1 to 10000",
		"services[0].alert_thresholds[2]: duplicate threshold 80",
	}
	if got := details(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("details %q, want %q", got, want)
	}
	r = e.expect("PUT", path, acmeTok, `{"alert_thresholds":["50"]}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{"alert_thresholds[0]: expected an integer, got a string"}) {
		t.Errorf("details %q", got)
	}
	e.expect("PUT", path, acmeTok, `{"alert_thresholds":null}`, 200, "")
	if got := e.proj.Store().Load().Services[acmeSvc].AlertThresholds; fmt.Sprint(got) != fmt.Sprint(catalog.DefaultAlertThresholds) {
		t.Errorf("after null: %v, want the defaults", got)
	}
}
