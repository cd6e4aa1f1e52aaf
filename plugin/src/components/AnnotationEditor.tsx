import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { SluiceOptions, SluiceQuery } from '../types';
import { usePicks, withValue } from './usePicks';

type Props = QueryEditorProps<DataSource, SluiceQuery, SluiceOptions>;

/**
 * Annotations from Sluice's configuration changes (plans changed, applications suspended,
 * limits edited) of one service, optionally of one application.
 */
export function AnnotationEditor({ query, onChange, datasource }: Props) {
  const services = usePicks(datasource, 'services');
  const apps = usePicks(datasource, 'applications', query.serviceId);
  const change = (patch: Partial<SluiceQuery>) => onChange({ ...query, queryType: 'changes', ...patch });
  const app = query.appIds?.[0];
  return (
    <InlineFieldRow>
      <InlineField label="Service" labelWidth={12}>
        <Select
          aria-label="Service"
          width={30}
          allowCustomValue
          options={withValue(services.options, query.serviceId)}
          value={query.serviceId ?? null}
          onChange={(v: SelectableValue<string>) => change({ serviceId: v?.value })}
        />
      </InlineField>
      <InlineField label="Application" labelWidth={12} tooltip="Empty: every application of the service">
        <Select
          aria-label="Application"
          width={30}
          allowCustomValue
          isClearable
          options={withValue(apps.options, app)}
          value={app ?? null}
          onChange={(v: SelectableValue<string> | null) => change({ appIds: v?.value ? [v.value] : [] })}
        />
      </InlineField>
      <InlineField label="Limit" labelWidth={8}>
        <Input
          aria-label="Limit"
          type="number"
          min={1}
          max={1000}
          width={10}
          value={query.limit ?? ''}
          onChange={(e: ChangeEvent<HTMLInputElement>) => change({ limit: e.currentTarget.value === '' ? undefined : Number(e.currentTarget.value) })}
        />
      </InlineField>
    </InlineFieldRow>
  );
}
