import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, MultiSelect, RadioButtonGroup, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { GRANULARITIES, GROUP_BY, PERIODS, QUERY_TYPES, QueryType, SluiceOptions, SluiceQuery } from '../types';
import { stringOptions, usePicks, withValue } from './usePicks';

type Props = QueryEditorProps<DataSource, SluiceQuery, SluiceOptions>;

/** Which fields a query type uses. */
const uses: Record<QueryType, { metric: boolean; apps: boolean; groupBy: boolean; granularity: boolean; limit: boolean; limits: boolean }> = {
  usage: { metric: true, apps: true, groupBy: true, granularity: true, limit: false, limits: false },
  denials: { metric: false, apps: true, groupBy: false, granularity: true, limit: false, limits: false },
  top: { metric: true, apps: false, groupBy: false, granularity: false, limit: true, limits: false },
  utilization: { metric: true, apps: true, groupBy: false, granularity: false, limit: false, limits: true },
  changes: { metric: false, apps: true, groupBy: false, granularity: false, limit: true, limits: false },
};

/** The query editor: query type, service, metric, applications, group-by and the type's own options. */
export function QueryEditor({ query, onChange, onRunQuery, datasource }: Props) {
  const type: QueryType = query.queryType ?? 'usage';
  const use = uses[type] ?? uses.usage;
  const services = usePicks(datasource, 'services');
  const metrics = usePicks(datasource, 'metrics', query.serviceId);
  const apps = usePicks(datasource, 'applications', query.serviceId);

  const change = (patch: Partial<SluiceQuery>, run = true) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  const num = (field: 'limit' | 'minRatio') => (e: ChangeEvent<HTMLInputElement>) => {
    const v = e.currentTarget.value;
    change({ [field]: v === '' ? undefined : Number(v) }, false);
  };

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query" labelWidth={14}>
          <RadioButtonGroup<QueryType>
            options={QUERY_TYPES.map((t) => ({ value: t.value, label: t.label, description: t.description }))}
            value={type}
            onChange={(v) => change({ queryType: v })}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField label="Service" labelWidth={14} invalid={!!services.error} error={services.error}>
          <Select
            aria-label="Service"
            width={30}
            allowCustomValue
            options={withValue(services.options, query.serviceId)}
            value={query.serviceId ?? null}
            onChange={(v: SelectableValue<string>) => change({ serviceId: v?.value })}
          />
        </InlineField>
        {use.metric && (
          <InlineField label="Metric" labelWidth={10}>
            <Select
              aria-label="Metric"
              width={24}
              allowCustomValue
              isClearable={type === 'utilization'}
              options={withValue(metrics.options, query.metric)}
              value={query.metric ?? null}
              onChange={(v: SelectableValue<string> | null) => change({ metric: v?.value })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        {use.apps && (
          <InlineField label="Applications" labelWidth={14} tooltip="Empty: the whole service. Each application is one series; $app variables expand.">
            <MultiSelect
              aria-label="Applications"
              width={40}
              allowCustomValue
              options={apps.options}
              value={query.appIds ?? []}
              onChange={(v: Array<SelectableValue<string>>) => change({ appIds: v.map((x) => x.value!).filter(Boolean) })}
            />
          </InlineField>
        )}
        {use.groupBy && (
          <InlineField label="Group by" labelWidth={10}>
            <Select
              aria-label="Group by"
              width={16}
              options={stringOptions(GROUP_BY)}
              value={query.groupBy ?? ''}
              onChange={(v: SelectableValue<string>) => change({ groupBy: v.value || undefined })}
            />
          </InlineField>
        )}
        {use.granularity && (
          <InlineField label="Granularity" labelWidth={12} tooltip="auto: the finest calendar step the panel's interval and max data points allow">
            <Select
              aria-label="Granularity"
              width={14}
              options={stringOptions(GRANULARITIES)}
              value={query.granularity ?? 'auto'}
              onChange={(v: SelectableValue<string>) => change({ granularity: v.value })}
            />
          </InlineField>
        )}
        {use.limit && (
          <InlineField label="Limit" labelWidth={8}>
            <Input aria-label="Limit" type="number" min={1} max={1000} width={10} value={query.limit ?? ''} onChange={num('limit')} onBlur={onRunQuery} />
          </InlineField>
        )}
      </InlineFieldRow>
      {use.limits && (
        <InlineFieldRow>
          <InlineField label="Period" labelWidth={14}>
            <Select
              aria-label="Period"
              width={16}
              options={stringOptions(PERIODS, 'every')}
              value={query.period ?? ''}
              onChange={(v: SelectableValue<string>) => change({ period: v.value || undefined })}
            />
          </InlineField>
          <InlineField label="Min ratio" labelWidth={10} tooltip="Only limits at least this full: 0.9 lists those at 90 % or more">
            <Input aria-label="Min ratio" type="number" min={0} step={0.05} width={10} value={query.minRatio ?? ''} onChange={num('minRatio')} onBlur={onRunQuery} />
          </InlineField>
          <InlineField label="Format" labelWidth={10} tooltip="Table for panels; numeric gives one value per limit, for alert rules">
            <RadioButtonGroup<'table' | 'numeric'>
              options={[
                { value: 'table', label: 'Table' },
                { value: 'numeric', label: 'Numeric (alerting)' },
              ]}
              value={query.format ?? 'table'}
              onChange={(v) => change({ format: v })}
            />
          </InlineField>
        </InlineFieldRow>
      )}
    </>
  );
}
