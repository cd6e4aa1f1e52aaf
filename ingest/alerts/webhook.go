package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the lowercase hex HMAC-SHA256 of
	// the request body keyed with the tenant's webhook secret.
	SignatureHeader = "X-Sluice-Signature"
	// IDHeader carries the alert's id: a receiver that sees an id twice has
	// the same alert twice.
	IDHeader = "X-Sluice-Alert-Id"
	// AttemptHeader carries the attempt number, from 1.
	AttemptHeader = "X-Sluice-Attempt"
)

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature under secret, comparing
// in constant time. Receivers written in Go can use it as it is.
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(secret, body)))
}

// Retry is the webhook's retry policy: Attempts tries in all, the n-th retry
// after Backoff×2^(n-1), at most MaxBackoff.
type Retry struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
}

// DefaultRetry tries 8 times over about two minutes (1 s, 2 s, ... 30 s
// between attempts): long enough to ride out a receiver's restart, short
// enough that one dead receiver does not hold the alerts behind it for long.
var DefaultRetry = Retry{Attempts: 8, Backoff: time.Second, MaxBackoff: 30 * time.Second, Timeout: 10 * time.Second}

// errPermanent marks an answer that retrying cannot change (a 4xx other than
// 408 and 429).
var errPermanent = errors.New("permanent failure")

// deliver POSTs body to target, signed with secret, until an attempt gets a
// 2xx, the answer is permanent, the attempts are spent or ctx ends. Errors
// name the target's host only: a webhook URL may carry a token in its path
// or query.
func deliver(ctx context.Context, client *http.Client, rt Retry, target, secret, id string, body []byte) (attempts int, err error) {
	u, perr := url.Parse(target)
	if perr != nil {
		return 0, fmt.Errorf("webhook: unparsable URL: %w", errPermanent)
	}
	sig := Sign([]byte(secret), body)
	wait := rt.Backoff
	for attempts = 1; ; attempts++ {
		err = post(ctx, client, rt.Timeout, target, sig, id, attempts, body)
		if err == nil {
			return attempts, nil
		}
		err = fmt.Errorf("webhook %s: attempt %d: %w", u.Host, attempts, err)
		if errors.Is(err, errPermanent) || attempts >= rt.Attempts {
			return attempts, err
		}
		select {
		case <-ctx.Done():
			return attempts, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, rt.MaxBackoff)
	}
}

func post(ctx context.Context, client *http.Client, timeout time.Duration, target, sig, id string, attempt int, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", errPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-alerts")
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set(IDHeader, id)
	req.Header.Set(AttemptHeader, strconv.Itoa(attempt))
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error repeats the whole URL
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return fmt.Errorf("status %d", s)
	default:
		return fmt.Errorf("status %d: %w", s, errPermanent)
	}
}

// newClient is the webhook HTTP client: no redirects (a receiver's redirect
// would send the signed alert somewhere its tenant did not name).
func newClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
