import { fireEvent, screen } from '@testing-library/react';

import type { DataSource } from '../datasource';
import { PickItem, SluiceVariableQuery } from '../types';

/** A data source whose pick lists answer from fixed data, recording what was asked. */
export function fakeDatasource(): DataSource & { asked: string[] } {
  const asked: string[] = [];
  const lists: Record<string, PickItem[]> = {
    services: [
      { value: 'svc', label: 'svc' },
      { value: 'other', label: 'other' },
    ],
    'metrics svc': [
      { value: 'hits', label: 'hits' },
      { value: 'search', label: 'search', description: 'counts toward hits' },
    ],
    'applications svc': [
      { value: 'a1', label: 'a1' },
      { value: 'a2', label: 'a2' },
    ],
  };
  const ds = {
    asked,
    listPicks: jest.fn(async (kind: SluiceVariableQuery['kind'], serviceId?: string, prefix?: string) => {
      const key = kind === 'services' ? kind : `${kind} ${serviceId}`;
      asked.push(prefix ? `${key} ${prefix}` : key);
      return lists[key] ?? [];
    }),
  };
  return ds as unknown as DataSource & { asked: string[] };
}

/** Opens the Select labelled label and picks the option with text option. */
export async function pick(label: string, option: string) {
  const input = screen.getByLabelText(label);
  fireEvent.keyDown(input, { key: 'ArrowDown' });
  const choice = await screen.findByText(option, { selector: 'span' });
  fireEvent.click(choice);
}
