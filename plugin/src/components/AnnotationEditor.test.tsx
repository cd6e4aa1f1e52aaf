import React from 'react';
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';

import { SluiceQuery } from '../types';
import { AnnotationEditor } from './AnnotationEditor';
import { fakeDatasource, pick } from './testutil';

async function setup(query: Partial<SluiceQuery>) {
  const ds = fakeDatasource();
  const onChange = jest.fn();
  const q = { refId: 'Anno', queryType: 'changes', ...query } as SluiceQuery;
  const utils = render(<AnnotationEditor query={q} onChange={onChange} onRunQuery={jest.fn()} datasource={ds} />);
  await act(async () => {}); // the pick lists load
  return { ds, onChange, ...utils };
}

describe('AnnotationEditor', () => {
  it('picks a service; every change is a changes query', async () => {
    const { onChange } = await setup({ queryType: 'usage' as SluiceQuery['queryType'] });
    await pick('Service', 'svc');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ queryType: 'changes', serviceId: 'svc' }));
  });

  it('narrows to one application of the service and sets the limit', async () => {
    const { onChange, ds } = await setup({ serviceId: 'svc' });
    await waitFor(() => expect(ds.asked).toContain('applications svc'));
    await pick('Application', 'a2');
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ appIds: ['a2'] }));
    fireEvent.change(screen.getByLabelText('Limit'), { target: { value: '50' } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ limit: 50, queryType: 'changes' }));
  });
});
