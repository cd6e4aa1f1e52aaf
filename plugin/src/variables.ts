import { CustomVariableSupport, DataQueryRequest, DataQueryResponse, FieldType, createDataFrame } from '@grafana/data';
import { from, Observable } from 'rxjs';
import { map } from 'rxjs/operators';
import { getTemplateSrv } from '@grafana/runtime';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import type { DataSource } from './datasource';
import { SluiceVariableQuery } from './types';

/** Template variables listing services, metrics or applications (from the backend's pick lists). */
export class SluiceVariableSupport extends CustomVariableSupport<DataSource, SluiceVariableQuery> {
  editor = VariableQueryEditor;

  constructor(private readonly ds: DataSource) {
    super();
  }

  query(request: DataQueryRequest<SluiceVariableQuery>): Observable<DataQueryResponse> {
    const q = request.targets[0];
    const service = q.serviceId ? getTemplateSrv().replace(q.serviceId, request.scopedVars) : undefined;
    return from(this.ds.listPicks(q.kind ?? 'services', service, q.prefix)).pipe(
      map((items) => ({
        data: [
          createDataFrame({
            fields: [
              { name: 'text', type: FieldType.string, values: items.map((i) => i.label) },
              { name: 'value', type: FieldType.string, values: items.map((i) => i.value) },
            ],
          }),
        ],
      }))
    );
  }
}
