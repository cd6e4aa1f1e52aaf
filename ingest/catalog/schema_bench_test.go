package catalog

import (
	"bytes"
	"testing"
)

// BenchmarkSchema200kApps parses, clones and validates a document of
// 200,000 applications: the cost of the schema-driven decoder, Clone and
// validator on a large configuration.
func BenchmarkSchema200kApps(b *testing.B) {
	doc := bigDocument(200_000)
	for _, f := range []Format{FormatYAML, FormatJSON} {
		var buf bytes.Buffer
		if err := doc.Write(&buf, f); err != nil {
			b.Fatal(err)
		}
		b.Run("parse-"+f.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(buf.Bytes(), f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = doc.Clone()
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := doc.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
