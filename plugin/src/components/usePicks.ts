import { useEffect, useState } from 'react';
import { SelectableValue } from '@grafana/data';

import type { DataSource } from '../datasource';
import { SluiceVariableQuery } from '../types';

/**
 * Loads a pick list from the backend (services, or a service's metrics or applications) as Select
 * options. A failed load leaves the list empty and returns the error's message: the editors still
 * accept typed values and template variables.
 */
export function usePicks(
  ds: Pick<DataSource, 'listPicks'>,
  kind: SluiceVariableQuery['kind'],
  serviceId?: string,
  prefix?: string
): { options: Array<SelectableValue<string>>; error?: string } {
  const [state, setState] = useState<{ options: Array<SelectableValue<string>>; error?: string }>({ options: [] });
  useEffect(() => {
    let live = true;
    if (kind !== 'services' && !serviceId) {
      setState({ options: [] });
      return;
    }
    ds.listPicks(kind, serviceId, prefix).then(
      (items) => live && setState({ options: items.map((i) => ({ value: i.value, label: i.label, description: i.description })) }),
      (err) => live && setState({ options: [], error: String(err?.data?.message ?? err?.message ?? err) })
    );
    return () => {
      live = false;
    };
  }, [ds, kind, serviceId, prefix]);
  return state;
}

/** Options for plain string choices; '' is shown as "none". */
export function stringOptions(values: string[], none = 'none'): Array<SelectableValue<string>> {
  return values.map((v) => ({ value: v, label: v === '' ? none : v }));
}

/** Keeps the chosen value in the list even when the pick list lacks it (a variable, a typed id). */
export function withValue(options: Array<SelectableValue<string>>, value?: string): Array<SelectableValue<string>> {
  if (!value || options.some((o) => o.value === value)) {
    return options;
  }
  return [...options, { value, label: value }];
}
