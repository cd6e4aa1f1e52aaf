import { DataSourceInstanceSettings, ScopedVars } from '@grafana/data';

import { DataSource, resolveTimezone } from './datasource';
import { SluiceOptions, SluiceQuery } from './types';

const vars: Record<string, string | string[]> = { service: 'svc', metric: 'hits', app: ['a1', 'a2'] };

jest.mock('@grafana/runtime', () => ({
  ...jest.requireActual('@grafana/runtime'),
  getTemplateSrv: () => ({
    replace: (v: string, _s?: ScopedVars, format?: string) =>
      v.replace(/\$(\w+)/g, (_, name) => {
        const val = vars[name];
        if (Array.isArray(val)) {
          return format === 'csv' ? val.join(',') : `{${val.join(',')}}`;
        }
        return val ?? `$${name}`;
      }),
  }),
}));

const ds = new DataSource({ id: 1, uid: 'sluice', type: 'sluice-datasource', name: 'Sluice', jsonData: {} } as DataSourceInstanceSettings<SluiceOptions>);

describe('DataSource', () => {
  it('expands template variables, multi-value applications one per id', () => {
    const q: SluiceQuery = { refId: 'A', queryType: 'usage', serviceId: '$service', metric: '$metric', appIds: ['$app', 'a2', 'a3'] };
    expect(ds.applyTemplateVariables(q, {})).toEqual({ ...q, serviceId: 'svc', metric: 'hits', appIds: ['a1', 'a2', 'a3'] });
  });

  it('runs only queries with a service', () => {
    expect(ds.filterQuery({ refId: 'A', queryType: 'usage' })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'usage', serviceId: 'svc', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'usage', serviceId: 'svc' })).toBe(true);
  });

  it('turns annotations into changes queries of their service', () => {
    const prepare = ds.annotations!.prepareQuery!;
    expect(prepare({ enable: true, iconColor: 'red', name: 'c', target: { refId: 'X', queryType: 'usage', serviceId: 'svc' } })).toEqual({
      refId: 'X',
      queryType: 'changes',
      serviceId: 'svc',
    });
    expect(prepare({ enable: true, iconColor: 'red', name: 'c', target: { refId: 'X', queryType: 'changes' } })).toBeUndefined();
  });

  it.each([
    ['utc', 'UTC'],
    ['Europe/Berlin', 'Europe/Berlin'],
    ['browser', 'UTC'], // jest runs with TZ=UTC
    [undefined, 'UTC'],
  ])('maps the dashboard time zone %s to %s', (tz, want) => {
    expect(resolveTimezone(tz)).toBe(want);
  });
});
