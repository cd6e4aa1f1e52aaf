import React from 'react';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';

import { SluiceVariableQuery } from '../types';
import { VariableQueryEditor } from './VariableQueryEditor';
import { fakeDatasource, pick } from './testutil';

async function setup(query: Partial<SluiceVariableQuery>) {
  const ds = fakeDatasource();
  const onChange = jest.fn();
  const q = { refId: 'V', ...query } as SluiceVariableQuery;
  const utils = render(<VariableQueryEditor query={q} onChange={onChange} onRunQuery={jest.fn()} datasource={ds} />);
  await act(async () => {}); // the pick lists load
  return { ds, onChange, ...utils };
}

describe('VariableQueryEditor', () => {
  it('lists services by default, without a service field', async () => {
    const { ds } = await setup({});
    await waitFor(() => expect(ds.asked).toEqual(['services']));
    expect(screen.queryByLabelText('Service')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Prefix')).not.toBeInTheDocument();
  });

  it('switches to metrics and picks a service', async () => {
    const { onChange, rerender, ds } = await setup({});
    fireEvent.click(screen.getByText('Metrics'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ kind: 'metrics' }));
    rerender(<VariableQueryEditor query={{ refId: 'V', kind: 'metrics' }} onChange={onChange} onRunQuery={jest.fn()} datasource={ds} />);
    await pick('Service', 'svc');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ kind: 'metrics', serviceId: 'svc' }));
  });

  it('takes a prefix for applications and keeps a variable as the service', async () => {
    const { onChange } = await setup({ kind: 'applications', serviceId: '$service' });
    expect(screen.getByText('$service')).toBeInTheDocument();
    fireEvent.change(screen.getByLabelText('Prefix'), { target: { value: 'acme-' } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', kind: 'applications', serviceId: '$service', prefix: 'acme-' });
  });
});
