package chschema

import "math"

// MaxTotal is the largest total a reader presents: 9223372036854775807, the
// largest Int64. A total that would pass it is presented as MaxTotal, which
// therefore means "at least 9223372036854775807".
const MaxTotal = math.MaxInt64

// wrapGap is how far sum(toFloat64(x)) may lie from the Int64 sum before the
// latter counts as wrapped: 2^62. A wrap is off by a multiple of 2^64; the
// float sum of n values is off by at most about n·2^-53 of the total, under
// 2^62 for any n below 2^52 rows.
const wrapGap = "4611686018427387904."

// SumValue is the aggregate every reader of the usage tables uses instead of
// sum(value): the sum, saturated at MaxTotal (see SaturatingSum).
var SumValue = SaturatingSum("value")

// SaturatingSum returns SQL for the sum of the Int64 column or expression
// col, whose values are never negative, saturated at MaxTotal instead of
// wrapping. ClickHouse sums Int64 modulo 2^64, both in queries and when
// SummingMergeTree merges rows, so the expression answers MaxTotal when
//
//   - a row is negative: no written row is (usage is never negative and
//     the rollup saturates its own sums), so a merge wrapped it;
//   - the Int64 sum is negative, or lies more than 2^62 from the Float64
//     sum of the same values: the query's sum wrapped.
//
// What it cannot see is a stored row whose true sum passed 2^64: a merge
// wraps that to a plausible positive value. That takes 1.8e19 units of one
// application's metric in one bucket; ClickHouse 18.16 has no wider integer
// to keep them in.
//
// The expression is valid on ClickHouse 18.16 and current releases; its type
// is Int64.
func SaturatingSum(col string) string {
	return saturating("sum("+col+")", "min("+col+")", "sum(toFloat64("+col+"))")
}

// SaturatingSumIf is SaturatingSum over the rows where the SQL condition
// cond holds (sumIf). cond appears several times in the result, so it must
// not hold placeholders.
func SaturatingSumIf(col, cond string) string {
	return saturating("sumIf("+col+", "+cond+")", "minIf("+col+", "+cond+")", "sumIf(toFloat64("+col+"), "+cond+")")
}

func saturating(sum, minimum, fsum string) string {
	return "if(" + minimum + " < 0 OR " + sum + " < 0 OR " + fsum + " - toFloat64(" + sum + ") > " + wrapGap +
		", toInt64(9223372036854775807), " + sum + ")"
}

// AddTotal adds two totals, saturating at MaxTotal (a total of MaxTotal
// already means "at least that"). Totals are never negative; a negative one
// can only be a wrapped sum, and counts as MaxTotal.
func AddTotal(a, b int64) int64 {
	if a < 0 || b < 0 || b > MaxTotal-a {
		return MaxTotal
	}
	return a + b
}
