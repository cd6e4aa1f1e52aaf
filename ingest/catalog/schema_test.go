package catalog

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fill sets every field reachable from v, a schema value, to a value that
// is not zero and that depends on seed and the field's place, with two
// items in every list: a document that uses the whole schema.
func fill(v reflect.Value, seed, place string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(seed + place)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int64:
		v.SetInt(int64(len(seed + place)))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), seed, fmt.Sprint(place, "-", i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), seed, place+"-"+strings.ToLower(v.Type().Field(i).Name))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), seed, place)
	default:
		panic("fill: " + v.Kind().String())
	}
}

func filled(seed string) *Document {
	var d Document
	fill(reflect.ValueOf(&d).Elem(), seed, "")
	return &d
}

// TestSchemaRoundTrip: whatever fields the Spec types have, both file
// formats write every one of them and the decoder reads every one back.
func TestSchemaRoundTrip(t *testing.T) {
	for _, f := range []Format{FormatYAML, FormatJSON} {
		t.Run(f.String(), func(t *testing.T) {
			want := filled("v")
			var b bytes.Buffer
			if err := want.Write(&b, f); err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b.Bytes(), f)
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, b.String())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the document:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestCloneSharesNothing: a change to every field of a clone leaves the
// original as it was, whatever fields the Spec types have.
func TestCloneSharesNothing(t *testing.T) {
	orig := filled("a")
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("clone differs from the original")
	}
	// Overwrite the clone's items in place, through the slices it holds.
	overwrite(reflect.ValueOf(c).Elem(), "b")
	if want := filled("a"); !reflect.DeepEqual(orig, want) {
		t.Errorf("a change to the clone shows through the original")
	}
	if want := filled("b"); !reflect.DeepEqual(c, want) {
		t.Errorf("clone not overwritten: the test is broken")
	}
}

// overwrite refills v's items in place, keeping the slices it holds.
func overwrite(v reflect.Value, seed string) {
	var walk func(v reflect.Value, place string)
	walk = func(v reflect.Value, place string) {
		switch v.Kind() {
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprint(place, "-", i))
			}
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), place+"-"+strings.ToLower(v.Type().Field(i).Name))
			}
		case reflect.Pointer:
			walk(v.Elem(), place) // in place, through the pointer the clone holds
		default:
			fill(v, seed, place)
		}
	}
	walk(v, "")
}

func TestFieldName(t *testing.T) {
	var a AppSpec
	var l LimitSpec
	var d Document
	for _, c := range []struct {
		name, got, want string
	}{
		{"first field", FieldName(&a, &a.ID), "id"},
		{"list", FieldName(&a, &a.ReferrerFilters), "referrer_filters"},
		{"string field", FieldName(&l, &l.Consistency), "consistency"},
		{"last field", FieldName(&l, &l.Scope), "scope"},
		{"int", FieldName(&l, &l.Max), "max"},
		{"document", FieldName(&d, &d.Tenants), "tenants"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("FieldName of a pointer outside the struct did not panic")
		}
	}()
	var other string
	FieldName(&a, &other)
}

func TestDecodeTargets(t *testing.T) {
	var list []string
	var app AppSpec
	for _, c := range []struct {
		name    string
		into    any
		wantErr string
	}{
		{"spec type", &app, ""},
		{"string list", &list, "expected a list, got a mapping"},
		{"not a pointer", app, "cannot decode into catalog.AppSpec"},
		{"nil pointer", (*AppSpec)(nil), "cannot decode into *catalog.AppSpec"},
		{"other type", &struct{ ID string }{}, "cannot decode into *struct"},
		{"pointer to schema pointer", new(*AppSpec), "cannot decode into **catalog.AppSpec"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Decode([]byte(`{"id":"x","plan":"p"}`), FormatJSON, c.into)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("got %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
	if app.ID != "x" || app.Plan != "p" {
		t.Errorf("decoded %+v", app)
	}
}
