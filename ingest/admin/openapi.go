package admin

import (
	"bytes"
	_ "embed" // the OpenAPI document is served from the file the package owns

	"github.com/valyala/fasthttp"
)

// OpenAPIPath is where the API listener serves the admin API's OpenAPI
// document, without authentication.
const OpenAPIPath = "/openapi.json"

// openAPI is openapi.json, the OpenAPI 3 description of every route of this
// package: the file in the repository is the document served, so the two
// cannot drift apart, and CI checks the running API against it.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns a copy of the admin API's OpenAPI 3 document (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// ServeOpenAPI answers GET (and HEAD) with the OpenAPI document; other
// methods get 405 in the admin API's error shape.
func ServeOpenAPI(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		writeJSON(ctx, 405, errorBody{Error: errorDetail{Code: "method_not_allowed", Message: "use GET"}})
		return
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	ctx.SetBody(openAPI)
}
