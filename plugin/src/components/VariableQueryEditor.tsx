import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, RadioButtonGroup, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { SluiceOptions, SluiceQuery, SluiceVariableQuery, VariableKind } from '../types';
import { usePicks, withValue } from './usePicks';

type Props = QueryEditorProps<DataSource, SluiceQuery, SluiceOptions, SluiceVariableQuery>;

/** A template variable's query: the tenant's services, or a service's metrics or applications. */
export function VariableQueryEditor({ query, onChange, datasource }: Props) {
  const kind: VariableKind = query.kind ?? 'services';
  const services = usePicks(datasource, 'services');
  const change = (patch: Partial<SluiceVariableQuery>) => onChange({ ...query, kind, ...patch });
  return (
    <InlineFieldRow>
      <InlineField label="List" labelWidth={10}>
        <RadioButtonGroup<VariableKind>
          options={[
            { value: 'services', label: 'Services' },
            { value: 'metrics', label: 'Metrics' },
            { value: 'applications', label: 'Applications' },
          ]}
          value={kind}
          onChange={(v) => change({ kind: v })}
        />
      </InlineField>
      {kind !== 'services' && (
        <InlineField label="Service" labelWidth={10} tooltip="A service id or a variable such as $service">
          <Select
            aria-label="Service"
            width={30}
            allowCustomValue
            options={withValue(services.options, query.serviceId)}
            value={query.serviceId ?? null}
            onChange={(v: SelectableValue<string>) => change({ serviceId: v?.value })}
          />
        </InlineField>
      )}
      {kind === 'applications' && (
        <InlineField label="Prefix" labelWidth={10} tooltip="Only application ids starting with this (at most 100 are listed)">
          <Input
            aria-label="Prefix"
            width={20}
            value={query.prefix ?? ''}
            onChange={(e: ChangeEvent<HTMLInputElement>) => change({ prefix: e.currentTarget.value || undefined })}
          />
        </InlineField>
      )}
    </InlineFieldRow>
  );
}
