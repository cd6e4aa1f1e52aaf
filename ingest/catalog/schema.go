package catalog

import (
	"fmt"
	"reflect"
	"strings"
)

// The configuration schema is described once: by the Document type, the
// Spec types it reaches and their struct tags. Everything that needs the
// schema's field names reads them from that description: the decoder (which
// key fills which field), Clone (which fields hold slices to copy) and the
// validator (the names in a problem's path, through FieldName). Adding a
// field to a Spec type is then one line: the decoder accepts it, Clone
// copies it, the encoders write it.
//
// A field is a string, a bool, an int64, a []string, a []int64, a list of
// another Spec type or a pointer to one (an optional block); its name is its
// json tag, and its yaml tag must say the same (both encoders write the
// file). The description is read once, when the
// package is initialised, and a Spec type outside it is a panic then, so a
// mistake in the description fails every test rather than one document.

type fieldKind uint8

const (
	kindString  fieldKind = iota
	kindBool              // true or false
	kindInt               // an int64
	kindStrings           // a []string
	kindList              // a list of another schema type
	kindStruct            // a pointer to another schema type (nil: absent)
	kindInts              // a []int64
)

// schemaField is one field of a schema type.
type schemaField struct {
	name   string
	index  int     // in the Go struct
	offset uintptr // in the Go struct
	kind   fieldKind
	elem   *schemaType // kindList: the items' type
}

// schemaType is one struct of the schema.
type schemaType struct {
	fields []schemaField
	byName map[string]*schemaField
	slices []int // indexes in fields of the fields holding slices or blocks
	deep   bool  // holds slices: a copy by value shares memory
}

// schema maps every type of the description to its fields.
var schema = describeSchema(reflect.TypeFor[Document]())

func describeSchema(root reflect.Type) map[reflect.Type]*schemaType {
	types := map[reflect.Type]*schemaType{}
	var describe func(t reflect.Type) *schemaType
	describe = func(t reflect.Type) *schemaType {
		if st, ok := types[t]; ok {
			return st
		}
		st := &schemaType{byName: map[string]*schemaField{}}
		types[t] = st
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			yname, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || yname != name {
				panic(fmt.Sprintf("catalog: %s.%s: want the same name in its json and yaml tags", t.Name(), sf.Name))
			}
			f := schemaField{name: name, index: i, offset: sf.Offset}
			switch ft := sf.Type; {
			case ft.Kind() == reflect.String:
				f.kind = kindString
			case ft.Kind() == reflect.Bool:
				f.kind = kindBool
			case ft.Kind() == reflect.Int64:
				f.kind = kindInt
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
				f.kind = kindStrings
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Int64:
				f.kind = kindInts
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				f.kind = kindList
				f.elem = describe(ft.Elem())
			case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
				f.kind = kindStruct
				f.elem = describe(ft.Elem())
			default:
				panic(fmt.Sprintf("catalog: %s.%s: a schema field is a string, bool, int64, []string, []int64, list of structs or pointer to a struct, not %s", t.Name(), sf.Name, ft))
			}
			if _, dup := st.byName[name]; dup {
				panic(fmt.Sprintf("catalog: %s: field name %q twice", t.Name(), name))
			}
			st.fields = append(st.fields, f)
		}
		for i := range st.fields {
			f := &st.fields[i]
			st.byName[f.name] = f
			if f.kind == kindStrings || f.kind == kindList || f.kind == kindStruct || f.kind == kindInts {
				st.slices = append(st.slices, i)
				st.deep = true
			}
		}
		return st
	}
	describe(root)
	return types
}

// schemaOf returns the description of T, which must be a schema type.
func schemaOf[T any]() *schemaType {
	st := schema[reflect.TypeFor[T]()]
	if st == nil {
		panic(fmt.Sprintf("catalog: %s is not a schema type", reflect.TypeFor[T]()))
	}
	return st
}

// FieldName returns the configuration name of the field f points to, which
// must be a field of *s, a Spec type or Document: FieldName(t,
// &t.AdminToken) is "admin_token". Whatever names a field (the validator's
// paths, the admin API's list bodies) spells it with FieldName, so that a
// field's name is written only in its tag and renaming a Go field is a
// compile error rather than a wrong name. It panics when f is not a field of
// *s.
func FieldName[T, F any](s *T, f *F) string {
	st := schemaOf[T]()
	off := reflect.ValueOf(f).Pointer() - reflect.ValueOf(s).Pointer()
	for i := range st.fields {
		if st.fields[i].offset == off {
			return st.fields[i].name
		}
	}
	panic(fmt.Sprintf("catalog: FieldName: not a field of %T", s))
}

// at returns the path of the field f of *s below path p.
func at[T, F any](p string, s *T, f *F) string {
	return field(p, FieldName(s, f))
}

// deepCopy replaces every slice and block reachable from v, a value of the
// schema type st, with a copy, so that v shares no memory with what it was
// copied from. Strings are immutable and stay shared.
func deepCopy(st *schemaType, v reflect.Value) {
	for _, i := range st.slices {
		f := &st.fields[i]
		s := v.Field(f.index)
		if s.IsNil() {
			continue
		}
		if f.kind == kindStruct {
			c := reflect.New(s.Type().Elem())
			c.Elem().Set(s.Elem())
			deepCopy(f.elem, c.Elem())
			s.Set(c)
			continue
		}
		c := reflect.MakeSlice(s.Type(), s.Len(), s.Len())
		reflect.Copy(c, s)
		if f.kind == kindList && f.elem.deep {
			for j := range c.Len() {
				deepCopy(f.elem, c.Index(j))
			}
		}
		s.Set(c)
	}
}

// cloneSpec returns a deep copy of v, a schema type.
func cloneSpec[T any](v T) T {
	deepCopy(schemaOf[T](), reflect.ValueOf(&v).Elem())
	return v
}
