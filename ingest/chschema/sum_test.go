package chschema

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// TestSaturatingSum runs SumValue and SaturatingSumIf on a real ClickHouse
// over SummingMergeTree rows, merged and not: totals within Int64 are exact
// (including many rows near the top, where the float comparison must not
// misfire), and totals past it read MaxTotal, never a wrapped value.
func TestSaturatingSum(t *testing.T) {
	conn := startCH(t)
	ctx := context.Background()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS satsum",
		"CREATE TABLE satsum.t (k String, value Int64) ENGINE = SummingMergeTree((value)) ORDER BY k",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const big = math.MaxInt64
	many := make([]int64, 1000)
	for i := range many {
		many[i] = big / 1000
	}
	cases := []struct {
		name    string
		inserts [][]int64 // one insert (one part) each
		merge   bool      // OPTIMIZE ... FINAL before reading
		want    int64
	}{
		{"small rows", [][]int64{{1, 2}, {3}}, false, 6},
		{"exactly MaxInt64 over two parts", [][]int64{{big - 10}, {10}}, false, big},
		{"exactly MaxInt64 merged", [][]int64{{big - 10}, {10}}, true, big},
		{"1000 rows near the top stay exact", [][]int64{many}, false, 1000 * (big / 1000)},
		{"MaxInt64 twice, query sum wraps to -2", [][]int64{{big}, {big}}, false, MaxTotal},
		{"MaxInt64 twice, merged into a stored -2", [][]int64{{big}, {big}}, true, MaxTotal},
		{"three MaxInt64 rows, query sum wraps past 2^64 to a positive", [][]int64{{big}, {big}, {big}}, false, MaxTotal},
		{"a wrapped row plus small rows", [][]int64{{big}, {big}, {5}}, false, MaxTotal},
		{"one past MaxInt64", [][]int64{{big - 10}, {11}}, false, MaxTotal},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("case%d", i)
			for _, rows := range tc.inserts {
				b, err := conn.PrepareBatch(ctx, "INSERT INTO satsum.t (k, value)")
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range rows {
					if err := b.Append(key, v); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Send(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.merge {
				if err := conn.Exec(ctx, "OPTIMIZE TABLE satsum.t FINAL"); err != nil {
					t.Fatal(err)
				}
			}
			var plain, sat, satIf, other int64
			// The conditions are literals: SaturatingSumIf repeats them.
			err := conn.QueryRow(ctx, "SELECT sum(value), "+SumValue+", "+SaturatingSumIf("value", "k = '"+key+"'")+", "+SaturatingSumIf("value", "k != '"+key+"'")+
				" FROM satsum.t WHERE k = ?", key).Scan(&plain, &sat, &satIf, &other)
			if err != nil {
				t.Fatal(err)
			}
			if sat != tc.want || satIf != tc.want {
				t.Errorf("SumValue = %d, SaturatingSumIf = %d, want %d (plain sum(value) = %d)", sat, satIf, tc.want, plain)
			}
			if other != 0 {
				t.Errorf("SaturatingSumIf over no rows = %d, want 0", other)
			}
		})
	}
}

func TestAddTotal(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b int64
		want int64
	}{
		{"small", 2, 3, 5},
		{"exactly MaxTotal", MaxTotal - 3, 3, MaxTotal},
		{"past MaxTotal", MaxTotal - 3, 4, MaxTotal},
		{"MaxTotal twice", MaxTotal, MaxTotal, MaxTotal},
		{"a wrapped input", -2, 1, MaxTotal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AddTotal(tc.a, tc.b); got != tc.want {
				t.Errorf("AddTotal(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
