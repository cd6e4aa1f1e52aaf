package main

import (
	"context"
	"testing"

	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// TestIntHash64MatchesClickHouse: the Go model recomputes the generator's
// values, so its hash must be the server's, bit for bit.
func TestIntHash64MatchesClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ClickHouse")
	}
	_, conn := chtest.Start(t)
	for _, x := range []uint64{0, 1, 3, 1000, 12345678901, 1<<63 + 5} {
		var got uint64
		if err := conn.QueryRow(context.Background(), "SELECT intHash64(toUInt64(?))", x).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := intHash64(x); got != want {
			t.Errorf("intHash64(%d): ClickHouse %d, Go %d", x, got, want)
		}
	}
}
