package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds the bytes read of one query API answer: the API's own
// bound (200,000 points) is about 9 MB of JSON.
const maxAnswer = 32 << 20

// Settings are a data source's configuration: the query API's base URL
// (jsonData.url, or the data source's URL field) and the tenant's query
// token (secureJsonData.token, which Grafana keeps encrypted).
type Settings struct {
	URL     string        `json:"url"`
	Timeout time.Duration `json:"-"`
	// TimeoutSeconds is jsonData.timeoutSeconds: how long one call to the
	// query API may take. Default 30.
	TimeoutSeconds int    `json:"timeoutSeconds"`
	Token          string `json:"-"`
}

// ParseSettings reads the data source settings Grafana sends: jsonData
// (url, timeoutSeconds), the instance URL as a fallback, and the decrypted
// secure field token.
func ParseSettings(jsonData []byte, instanceURL string, secure map[string]string) (Settings, error) {
	var s Settings
	if len(jsonData) > 0 {
		if err := json.Unmarshal(jsonData, &s); err != nil {
			return s, fmt.Errorf("read jsonData: %w", err)
		}
	}
	if s.URL == "" {
		s.URL = instanceURL
	}
	s.URL = strings.TrimRight(strings.TrimSpace(s.URL), "/")
	s.Token = secure["token"]
	s.Timeout = 30 * time.Second
	if s.TimeoutSeconds > 0 && s.TimeoutSeconds <= 600 {
		s.Timeout = time.Duration(s.TimeoutSeconds) * time.Second
	}
	return s, nil
}

// check says what is missing or wrong in s, in words for the health check.
func (s Settings) check() error {
	if s.URL == "" {
		return errors.New("the Sluice query API URL is not set (e.g. http://sluice:3002)")
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("the URL %q is not an http:// or https:// address", s.URL)
	}
	if s.Token == "" {
		return errors.New("no token is set: enter the tenant's query token")
	}
	return nil
}

// client calls the query API. It never logs or returns the token.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(s Settings) *client {
	return &client{base: s.URL, token: s.Token, http: &http.Client{Timeout: s.Timeout}}
}

// Errors of a call, told apart for the health check and for the status of a
// query's error.
var (
	// errUnreachable: no HTTP answer (refused, DNS, TLS, timeout). Its
	// text starts a health check's message.
	errUnreachable = errors.New("sluice is unreachable")
)

// apiError is an error answer of the query API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("Sluice answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("Sluice answered %d %s: %s", e.Status, e.Code, e.Message)
}

// get calls GET path?params and decodes the JSON answer into out. The path
// is a constant of this package; params are encoded.
func (c *client) get(ctx context.Context, path string, params url.Values, auth bool, out any) error {
	u := c.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnreachable, err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error quotes the URL, never the header: no token in it.
		return fmt.Errorf("%w at %s: %v", errUnreachable, c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("%w: read answer of %s: %v", errUnreachable, path, err)
	}
	if len(body) > maxAnswer {
		return fmt.Errorf("the answer of %s is larger than %d bytes", path, maxAnswer)
	}
	if resp.StatusCode != http.StatusOK {
		e := &apiError{Status: resp.StatusCode}
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &env) == nil {
			e.Code, e.Message = env.Error.Code, env.Error.Message
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// unwrapURLError drops url.Error's "Get <url>:" prefix (the base URL is
// already in the message).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
