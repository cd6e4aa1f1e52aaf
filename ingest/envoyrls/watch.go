package envoyrls

import (
	"context"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Reload reads dir and, if every file parses, puts the new configuration in
// force; otherwise it reports the error and keeps the configuration in
// force (as Envoy ratelimit does). It returns the load's error.
func (s *Service) Reload(dir string) error {
	files, err := ReadDir(dir)
	var c *Config
	if err == nil {
		s.lastSum.Store(sumFiles(files))
		c, err = Parse(files)
	}
	if err != nil {
		s.loadsFailed.Inc()
		s.log.Error("envoy ratelimit config: load failed, previous configuration kept", "dir", dir, "err", err)
		return err
	}
	s.SetConfig(c)
	s.loadsOK.Inc()
	s.log.Info("envoy ratelimit config loaded", "dir", dir, "files", len(c.Files), "domains", c.Domains())
	if s.onLoad != nil {
		s.onLoad(c)
	}
	return nil
}

// Watch reloads dir whenever the names or contents of its *.yaml files
// change, checking every interval (default 1s), until ctx ends. It reads
// the files to compare them, so that a change within one mtime tick, or an
// editor's rename over the file, is never missed; a directory within
// MaxFiles of small files costs little to read once a second. A change
// that fails to load is reported once and retried only when the files
// change again; a directory that cannot be read is reported once per
// distinct error, and loaded again once it can be.
func (s *Service) Watch(ctx context.Context, dir string, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Compared with the files the last Reload read, so that a change
		// made before Watch started is not missed.
		files, err := ReadDir(dir)
		if err == nil && sumFiles(files) == s.lastSum.Load() {
			continue
		}
		if err != nil && err.Error() == lastErr {
			continue // reported already
		}
		lastErr = ""
		if err := s.Reload(dir); err != nil { // Reload reports its own failure
			lastErr = err.Error()
		}
	}
}

// sumFiles is a hash of the files' names and contents.
func sumFiles(files []File) uint64 {
	h := xxhash.New()
	for _, f := range files {
		_, _ = h.WriteString(f.Name)
		_, _ = h.Write([]byte{0})
		_, _ = h.Write(f.Data)
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}
