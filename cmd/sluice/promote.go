package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/ingest/admin"
	"github.com/sluice-dev/sluice/internal/flagenv"
)

// cmdConfigPromote promotes a service's staging gateway configuration to
// production through the admin API of a running node (POST
// /admin/api/v1/services/{id}/gateway/promote), so that the promotion is a
// configuration event like any other and every node sees it.
func cmdConfigPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config promote", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service := fs.String("service", "", "id of the service whose staging gateway configuration to promote (required)")
	version := fs.Int64("version", 0, "staging version to promote (default: the latest)")
	adminURL := fs.String("admin-url", "http://127.0.0.1:3001", "base URL of a node's --listen, where the admin API answers")
	token := fs.String("admin-token", "", "the tenant's admin token (required; prefer the environment variable, which other users cannot see in the process list)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the answer")
	fs.Usage = flagenv.Usage(fs, "sluice config promote --service S [--version N] [flags]")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case *service == "":
		return usageError{"--service is required"}
	case *token == "":
		return usageError{"--admin-token (or " + flagenv.EnvName("admin-token") + ") is required"}
	case *version < 0:
		return usageError{"--version must be positive"}
	}
	base, err := url.Parse(*adminURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usageError{fmt.Sprintf("--admin-url %q: want http(s)://host:port", *adminURL)}
	}
	body := []byte("{}")
	if *version > 0 {
		body = fmt.Appendf(nil, `{"version":%d}`, *version)
	}
	endpoint := strings.TrimSuffix(base.String(), "/") + admin.Prefix + "services/" + url.PathEscape(*service) + "/gateway/promote"
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("promote: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("promote: %s: %s (%s)", resp.Status, e.Error.Message, e.Error.Code)
		}
		return fmt.Errorf("promote: %s", resp.Status)
	}
	var p struct {
		Version      int64 `json:"version"`
		PromotedFrom int64 `json:"promoted_from"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("promote: answer: %w", err)
	}
	fmt.Fprintf(stdout, "service %s: staging version %d promoted to production version %d\n", *service, p.PromotedFrom, p.Version)
	return nil
}
