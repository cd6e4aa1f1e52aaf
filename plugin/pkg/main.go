// Command gpx_sluice is the backend of the Sluice data source for Grafana.
// Grafana starts it as a plugin process and talks to it over the plugin gRPC
// protocol; it answers queries, health checks and the editors' pick lists by
// calling Sluice's query API.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/sluice-dev/sluice/plugin/pkg/sluice"
)

func main() {
	if err := datasource.Manage(sluice.PluginID, sluice.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("sluice data source stopped", "err", err.Error())
		os.Exit(1)
	}
}
