package query

import (
	"bytes"
	_ "embed" // the OpenAPI document is served from the file the package owns
)

// PathOpenAPI is where the query listener serves the query API's OpenAPI
// document, without authentication.
const PathOpenAPI = "/openapi.json"

// openAPI is openapi.json, the OpenAPI 3 description of every endpoint of
// this package: the file in the repository is the document served, so the
// two cannot drift apart, and CI checks the running API against it.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns a copy of the query API's OpenAPI 3 document (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPI) }
