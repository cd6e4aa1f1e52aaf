// Jest for the frontend's unit tests (`npm run test:ci`, run by `make test`).
// Tests run in UTC so that times render the same everywhere.
process.env.TZ = 'UTC';

const base = require('./.config/jest.config');

module.exports = {
  ...base,
  // d3-color and other Grafana dependencies ship .mjs files: transform them
  // as well, or jest stops at their `export` statements.
  transform: {
    '^.+\\.(t|j)sx?$|\\.mjs$': base.transform['^.+\\.(t|j)sx?$'],
  },
};
