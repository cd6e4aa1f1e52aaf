import {
  AnnotationSupport,
  CoreApp,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  ScopedVars,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';
import { Observable } from 'rxjs';

import { AnnotationEditor } from './components/AnnotationEditor';
import { DEFAULT_QUERY, PickItem, SluiceOptions, SluiceQuery, SluiceVariableQuery } from './types';
import { SluiceVariableSupport } from './variables';

/**
 * The Sluice data source. Queries run in the backend (plugin/pkg/sluice), which calls
 * Sluice's query API with the token from the secure settings; the browser never sees it.
 */
export class DataSource extends DataSourceWithBackend<SluiceQuery, SluiceOptions> {
  annotations: AnnotationSupport<SluiceQuery> = {
    QueryEditor: AnnotationEditor,
    prepareQuery: (anno) => {
      const target = anno.target;
      if (!target?.serviceId) {
        return undefined;
      }
      return { ...target, queryType: 'changes' };
    },
    getDefaultQuery: () => ({ queryType: 'changes' }),
  };

  constructor(instanceSettings: DataSourceInstanceSettings<SluiceOptions>) {
    super(instanceSettings);
    this.variables = new SluiceVariableSupport(this);
  }

  getDefaultQuery(_: CoreApp): Partial<SluiceQuery> {
    return DEFAULT_QUERY;
  }

  /** Runs only queries that name a service (an editor being filled in sends none). */
  filterQuery(query: SluiceQuery): boolean {
    return !query.hide && !!query.serviceId;
  }

  /** Template variables: $service, $metric and multi-value $app (one application per value). */
  applyTemplateVariables(query: SluiceQuery, scopedVars: ScopedVars): SluiceQuery {
    const srv = getTemplateSrv();
    const one = (v?: string) => (v ? srv.replace(v, scopedVars) : v);
    const apps: string[] = [];
    for (const a of query.appIds ?? []) {
      for (const v of srv.replace(a, scopedVars, 'csv').split(',')) {
        const t = v.trim();
        if (t !== '' && !apps.includes(t)) {
          apps.push(t);
        }
      }
    }
    return { ...query, serviceId: one(query.serviceId), metric: one(query.metric), groupBy: one(query.groupBy), appIds: apps };
  }

  /** Adds the dashboard's time zone to every query: the backend asks Sluice for calendar buckets in it. */
  query(request: DataQueryRequest<SluiceQuery>): Observable<DataQueryResponse> {
    const timezone = resolveTimezone(request.timezone);
    return super.query({ ...request, targets: request.targets.map((t) => ({ ...t, timezone })) });
  }

  /** A pick list from the backend: services, metrics of a service, applications of a service. */
  async listPicks(kind: SluiceVariableQuery['kind'], serviceId?: string, prefix?: string): Promise<PickItem[]> {
    if (kind === 'services') {
      return this.getResource<PickItem[]>('services');
    }
    if (!serviceId) {
      return [];
    }
    const params: Record<string, string> = { serviceId };
    if (kind === 'applications' && prefix) {
      params.prefix = prefix;
    }
    return this.getResource<PickItem[]>(kind, params);
  }
}

/** Maps Grafana's dashboard time zone to an IANA name (the browser's own for "browser"). */
export function resolveTimezone(tz?: string): string {
  if (!tz || tz === 'browser') {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  }
  if (tz === 'utc') {
    return 'UTC';
  }
  return tz;
}
