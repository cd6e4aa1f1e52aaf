import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';

import { SluiceOptions, SluiceSecureJsonData } from '../types';
import { ConfigEditor } from './ConfigEditor';

function settings(over: Partial<DataSourceSettings<SluiceOptions, SluiceSecureJsonData>> = {}) {
  return {
    id: 1,
    uid: 'sluice',
    orgId: 1,
    name: 'Sluice',
    type: 'sluice-datasource',
    typeName: 'Sluice',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    readOnly: false,
    withCredentials: false,
    jsonData: { url: 'http://sluice:3002' },
    secureJsonFields: {},
    ...over,
  } as DataSourceSettings<SluiceOptions, SluiceSecureJsonData>;
}

describe('ConfigEditor', () => {
  it('edits the URL and the timeout in jsonData', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    expect(screen.getByLabelText('URL')).toHaveValue('http://sluice:3002');
    fireEvent.change(screen.getByLabelText('URL'), { target: { value: 'https://q.example:3002' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ jsonData: { url: 'https://q.example:3002' } }));
    fireEvent.change(screen.getByLabelText('Timeout'), { target: { value: '45' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ jsonData: { url: 'http://sluice:3002', timeoutSeconds: 45 } })
    );
  });

  it('keeps the token in secureJsonData, never in jsonData', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);
    fireEvent.change(screen.getByLabelText('Token'), { target: { value: 'q-secret' } });
    const next = onOptionsChange.mock.calls[0][0];
    expect(next.secureJsonData).toEqual({ token: 'q-secret' });
    expect(JSON.stringify(next.jsonData)).not.toContain('q-secret');
  });

  it('shows a stored token as configured and resets it', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings({ secureJsonFields: { token: true } })} onOptionsChange={onOptionsChange} />);
    expect(screen.getByDisplayValue('configured')).toBeInTheDocument();
    fireEvent.click(screen.getByText('Reset'));
    expect(onOptionsChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ secureJsonFields: { token: false }, secureJsonData: { token: '' } })
    );
  });
});
