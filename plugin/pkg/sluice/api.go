package sluice

// The query API's answers, as far as the data source reads them
// (docs/query-api.md in the Sluice repository).

type seriesAnswer struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Granularity string `json:"granularity"`
	TZ          string `json:"tz"`
	Series      []struct {
		Group  map[string]any `json:"group"`
		Points []struct {
			T     string `json:"t"`
			Value int64  `json:"value"`
		} `json:"points"`
		Total int64 `json:"total"`
	} `json:"series"`
	Total int64 `json:"total"`
}

type topAnswer struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Metric string `json:"metric"`
	Apps   []struct {
		AppID string `json:"app_id"`
		Value int64  `json:"value"`
	} `json:"apps"`
}

type utilizationAnswer struct {
	ServiceID string           `json:"service_id"`
	Now       string           `json:"now"`
	Limits    []utilizationRow `json:"limits"`
}

type utilizationRow struct {
	AppID       string  `json:"app_id"`
	PlanID      string  `json:"plan_id"`
	State       string  `json:"state"`
	Metric      string  `json:"metric"`
	Period      string  `json:"period"`
	Max         int64   `json:"max"`
	Usage       int64   `json:"usage"`
	Ratio       float64 `json:"ratio"`
	WindowStart string  `json:"window_start"`
	WindowEnd   string  `json:"window_end"`
}

type changesAnswer struct {
	Changes []struct {
		Time      string `json:"time"`
		Kind      string `json:"kind"`
		ServiceID string `json:"service_id"`
		AppID     string `json:"app_id"`
		PlanID    string `json:"plan_id"`
		Text      string `json:"text"`
	} `json:"changes"`
}

type servicesAnswer struct {
	Services []struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Metrics []struct {
			Name   string `json:"name"`
			Parent string `json:"parent,omitempty"`
		} `json:"metrics"`
		Plans []string `json:"plans"`
	} `json:"services"`
	Truncated bool `json:"truncated"`
}

type applicationsAnswer struct {
	Applications []struct {
		ID     string `json:"id"`
		PlanID string `json:"plan_id"`
		State  string `json:"state"`
	} `json:"applications"`
	Truncated bool `json:"truncated"`
}

// Paths of the query API.
const (
	pathHealth       = "/health"
	pathUsage        = "/api/v1/usage"
	pathTop          = "/api/v1/top"
	pathDenials      = "/api/v1/denials"
	pathUtilization  = "/api/v1/utilization"
	pathChanges      = "/api/v1/changes"
	pathServices     = "/api/v1/services"
	pathApplications = "/api/v1/applications"
)
