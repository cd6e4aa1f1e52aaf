import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, SecretInput } from '@grafana/ui';

import { SluiceOptions, SluiceSecureJsonData } from '../types';

type Props = DataSourcePluginOptionsEditorProps<SluiceOptions, SluiceSecureJsonData>;

/** The data source settings: the query API's URL, a timeout, and the tenant's token as a secret. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields, secureJsonData } = options;

  const onURL = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, jsonData: { ...jsonData, url: e.currentTarget.value } });
  const onTimeout = (e: ChangeEvent<HTMLInputElement>) => {
    const v = e.currentTarget.value;
    onOptionsChange({ ...options, jsonData: { ...jsonData, timeoutSeconds: v === '' ? undefined : Number(v) } });
  };
  const onToken = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, secureJsonData: { token: e.currentTarget.value } });
  const onResetToken = () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, token: false },
      secureJsonData: { ...secureJsonData, token: '' },
    });

  return (
    <>
      <InlineField label="URL" labelWidth={18} tooltip="Sluice's query API (its --query-listen address)" required>
        <Input aria-label="URL" width={40} placeholder="http://sluice:3002" value={jsonData.url ?? ''} onChange={onURL} />
      </InlineField>
      <InlineField label="Token" labelWidth={18} tooltip="An admin or query token of the tenant; stored encrypted" required>
        <SecretInput
          aria-label="Token"
          width={40}
          placeholder="query token"
          isConfigured={!!secureJsonFields?.token}
          value={secureJsonData?.token ?? ''}
          onChange={onToken}
          onReset={onResetToken}
        />
      </InlineField>
      <InlineField label="Timeout (seconds)" labelWidth={18} tooltip="How long one call to the query API may take (default 30)">
        <Input aria-label="Timeout" type="number" min={1} max={600} width={10} value={jsonData.timeoutSeconds ?? ''} onChange={onTimeout} />
      </InlineField>
    </>
  );
}
