import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** The query types, one per Sluice query API endpoint (the backend's sluice.QueryTypes). */
export type QueryType = 'usage' | 'top' | 'denials' | 'utilization' | 'changes';

/** A query as the backend reads it (plugin/pkg/sluice Query). */
export interface SluiceQuery extends DataQuery {
  queryType: QueryType;
  serviceId?: string;
  metric?: string;
  appIds?: string[];
  /** usage: app_id, metric, region or code; empty for one series. */
  groupBy?: string;
  /** auto (from the panel's interval and max data points), or minute, hour, day, week, month, total. */
  granularity?: string;
  /** top and changes: how many. */
  limit?: number;
  /** utilization: only limits of this calendar period. */
  period?: string;
  /** utilization: only limits at least this full (0.9 = 90 %). */
  minRatio?: number;
  /** utilization: table (panels) or numeric (one frame per limit, for alert rules). */
  format?: 'table' | 'numeric';
  /** Filled in from the dashboard's time zone when the query runs. */
  timezone?: string;
}

export const DEFAULT_QUERY: Partial<SluiceQuery> = {
  queryType: 'usage',
  metric: 'hits',
  granularity: 'auto',
};

/** What a template variable lists. */
export type VariableKind = 'services' | 'metrics' | 'applications';

/** A template variable's query. */
export interface SluiceVariableQuery extends DataQuery {
  kind: VariableKind;
  serviceId?: string;
  prefix?: string;
}

/** The data source's settings (jsonData). */
export interface SluiceOptions extends DataSourceJsonData {
  /** Base URL of Sluice's query API, e.g. http://sluice:3002. */
  url?: string;
  /** How long one call to the query API may take; default 30. */
  timeoutSeconds?: number;
}

/** Secure settings, which Grafana stores encrypted and never sends back to the browser. */
export interface SluiceSecureJsonData {
  /** The tenant's query (or admin) token. */
  token?: string;
}

/** One entry of the backend's pick lists (CallResource). */
export interface PickItem {
  value: string;
  label: string;
  description?: string;
}

export const QUERY_TYPES: Array<{ value: QueryType; label: string; description: string }> = [
  { value: 'usage', label: 'Usage', description: 'Usage series of a metric' },
  { value: 'top', label: 'Top applications', description: 'Applications by usage over the range' },
  { value: 'denials', label: 'Denials', description: 'Denied calls by reason' },
  { value: 'utilization', label: 'Usage vs. limits', description: 'Each limit’s current window against its max' },
  { value: 'changes', label: 'Changes', description: 'Configuration changes (annotations)' },
];

export const GROUP_BY = ['', 'app_id', 'metric', 'region', 'code'];
export const GRANULARITIES = ['auto', 'minute', 'hour', 'day', 'week', 'month', 'total'];
export const PERIODS = ['', 'minute', 'hour', 'day', 'week', 'month', 'year', 'eternity'];
