package configlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Export is one tenant's configuration as it was when Export was called,
// ready to be written out without the whole document in memory: the
// tenant with its services and plans, and per service the records of its
// applications in id order, decoded one at a time as they are written.
type Export struct {
	tenant catalog.TenantSpec
	apps   [][]Record // by service, in tenant.Services order
}

// Export returns the tenant's part of the last valid configuration, or
// false if it has no such tenant. It copies references to the records, not
// the records, and holds the projection's lock only while it does.
func (p *Projection) Export(tenant string) (*Export, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.validDoc != nil {
		t := p.validDoc.Tenant(tenant)
		if t == nil {
			return nil, false
		}
		e := &Export{tenant: t.Clone()}
		for si := range e.tenant.Services {
			s := &e.tenant.Services[si]
			var recs []Record
			for _, a := range s.Applications {
				recs = append(recs, Record{Key: AppKey(tenant, s.ID, a.ID), Value: mustJSON(a)})
			}
			e.apps = append(e.apps, recs)
			s.Applications = nil
		}
		return e, true
	}
	doc, _ := p.skel.Document()
	t := doc.Tenant(tenant)
	if t == nil {
		return nil, false
	}
	e := &Export{tenant: *t}
	snap := p.store.Load()
	for si := range t.Services {
		s := &t.Services[si]
		var recs []Record
		if svc := snap.Services[s.ID]; svc != nil && svc.Tenant != nil && svc.Tenant.ID == tenant {
			ids := p.sortedIDs(svc)
			recs = make([]Record, 0, len(ids))
			for _, id := range ids {
				k := AppKey(tenant, s.ID, id)
				recs = append(recs, Record{Key: k, Value: p.state[k]})
			}
		}
		e.apps = append(e.apps, recs)
	}
	return e, true
}

// WriteJSON writes the export as a configuration document in JSON (one
// tenant), which catalog.Load reads back as the tenant's configuration.
func (e *Export) WriteJSON(w io.Writer) error {
	t := e.tenant
	services := t.Services
	t.Services = nil
	head, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("configlog: export: %w", err)
	}
	buf := bytes.NewBuffer(nil)
	flush := func(force bool) error {
		if buf.Len() < 64<<10 && !force {
			return nil
		}
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err != nil {
			return fmt.Errorf("configlog: export: %w", err)
		}
		return nil
	}
	buf.WriteString(`{"tenants":[`)
	buf.Write(head[:len(head)-1])
	if len(services) > 0 {
		buf.WriteString(`,"services":[`)
		for si := range services {
			s := services[si]
			s.Applications = nil
			b, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("configlog: export: %w", err)
			}
			if si > 0 {
				buf.WriteByte(',')
			}
			buf.Write(b[:len(b)-1])
			n := 0
			for _, r := range e.apps[si] {
				var a catalog.AppSpec
				_, ids, err := ParseKey(r.Key)
				if err != nil || !decodeValue(r.Value, &a) {
					continue
				}
				a.ID = ids[2]
				b, err := json.Marshal(a)
				if err != nil {
					return fmt.Errorf("configlog: export: %w", err)
				}
				if n == 0 {
					buf.WriteString(`,"applications":[`)
				} else {
					buf.WriteByte(',')
				}
				buf.Write(b)
				n++
				if err := flush(false); err != nil {
					return err
				}
			}
			if n > 0 {
				buf.WriteByte(']')
			}
			buf.WriteByte('}')
		}
		buf.WriteByte(']')
	}
	buf.WriteString("}]}\n")
	return flush(true)
}

// Document returns the export as a document, whole in memory (for YAML,
// which has no streaming writer here).
func (e *Export) Document() *catalog.Document {
	t := e.tenant.Clone()
	for si := range t.Services {
		for _, r := range e.apps[si] {
			var a catalog.AppSpec
			_, ids, err := ParseKey(r.Key)
			if err != nil || !decodeValue(r.Value, &a) {
				continue
			}
			a.ID = ids[2]
			t.Services[si].Applications = append(t.Services[si].Applications, a)
		}
	}
	return &catalog.Document{Tenants: []catalog.TenantSpec{t}}
}
