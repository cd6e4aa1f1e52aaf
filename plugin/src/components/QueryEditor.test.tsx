import React from 'react';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';

import { SluiceQuery } from '../types';
import { QueryEditor } from './QueryEditor';
import { fakeDatasource, pick } from './testutil';

async function setup(query: Partial<SluiceQuery>) {
  const ds = fakeDatasource();
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const q = { refId: 'A', queryType: 'usage', ...query } as SluiceQuery;
  const utils = render(<QueryEditor query={q} onChange={onChange} onRunQuery={onRunQuery} datasource={ds} />);
  await act(async () => {}); // the pick lists load
  return { ds, onChange, onRunQuery, ...utils };
}

describe('QueryEditor', () => {
  it('loads services, and the metrics and applications of the chosen service', async () => {
    const { ds } = await setup({ serviceId: 'svc' });
    await waitFor(() => expect(ds.asked.sort()).toEqual(['applications svc', 'metrics svc', 'services']));
  });

  it('does not ask for metrics or applications without a service', async () => {
    const { ds } = await setup({});
    await waitFor(() => expect(ds.asked).toEqual(['services']));
  });

  it('sets the service from the pick list and runs the query', async () => {
    const { onChange, onRunQuery } = await setup({});
    await pick('Service', 'svc');
    expect(onChange).toHaveBeenCalledWith(expect.objectContaining({ serviceId: 'svc', queryType: 'usage' }));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('sets the metric and group-by of a usage query', async () => {
    const { onChange } = await setup({ serviceId: 'svc' });
    await pick('Metric', 'search');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ metric: 'search' }));
    await pick('Group by', 'app_id');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ groupBy: 'app_id' }));
  });

  it('adds applications', async () => {
    const { onChange } = await setup({ serviceId: 'svc', appIds: ['a1'] });
    await pick('Applications', 'a2');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ appIds: ['a1', 'a2'] }));
  });

  it('switches the query type', async () => {
    const { onChange } = await setup({ serviceId: 'svc' });
    fireEvent.click(screen.getByText('Usage vs. limits'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'utilization' }));
  });

  it.each([
    ['usage', ['Metric', 'Applications', 'Group by', 'Granularity'], ['Limit', 'Period', 'Min ratio']],
    ['denials', ['Applications', 'Granularity'], ['Metric', 'Group by', 'Limit', 'Period']],
    ['top', ['Metric', 'Limit'], ['Applications', 'Group by', 'Granularity', 'Period']],
    ['utilization', ['Metric', 'Applications', 'Period', 'Min ratio'], ['Group by', 'Granularity', 'Limit']],
    ['changes', ['Applications', 'Limit'], ['Metric', 'Group by', 'Period']],
  ])('shows the fields of %s queries', async (queryType, shown, hidden) => {
    await setup({ queryType: queryType as SluiceQuery['queryType'], serviceId: 'svc' });
    for (const label of shown) {
      expect(screen.getByLabelText(label)).toBeInTheDocument();
    }
    for (const label of hidden) {
      expect(screen.queryByLabelText(label)).not.toBeInTheDocument();
    }
  });

  it('sets the limit, min ratio, period and format of utilization and top', async () => {
    const { onChange } = await setup({ queryType: 'utilization', serviceId: 'svc' });
    fireEvent.change(screen.getByLabelText('Min ratio'), { target: { value: '0.9' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ minRatio: 0.9 }));
    await pick('Period', 'month');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ period: 'month' }));
    fireEvent.click(screen.getByText('Numeric (alerting)'));
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ format: 'numeric' }));

    const top = await setup({ queryType: 'top', serviceId: 'svc' });
    fireEvent.change(top.getByLabelText('Limit'), { target: { value: '5' } });
    expect(top.onChange).toHaveBeenLastCalledWith(expect.objectContaining({ limit: 5 }));
  });
});
