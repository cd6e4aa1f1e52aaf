package configlog_test

import (
	"log/slog"
	"testing"

	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/ingest/configlog/logtest"
)

func TestFileLogConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) configlog.Log {
		l, err := configlog.OpenFile(t.TempDir(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestMemLogConformance(t *testing.T) {
	logtest.Run(t, func(*testing.T) configlog.Log { return configlog.NewMemLog() })
}
