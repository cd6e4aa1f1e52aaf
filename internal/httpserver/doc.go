// Package httpserver runs every fasthttp server of Sluice (the API listener,
// the query API, the metrics listener of a rollup-only node) the same way,
// with the protections that fasthttp's defaults lack. New takes a configured
// fasthttp.Server and owns its Logger, ErrorHandler and
// SecureErrorLogMessage; Server.Serve wraps the listener so that every
// connection passes through a guard before fasthttp reads it.
//
// Guarantees, on every listener served this way:
//
//   - No request byte reaches a log. fasthttp's own messages (a malformed
//     request, a connection error) quote the request's bytes, URL and headers
//     included, where credentials travel. The Logger New installs keeps only
//     what fasthttp is reporting (a fixed event), the peer's address and a
//     fixed cause (Failure.Reason); the message arguments themselves are
//     never printed. Connection errors are logged at debug level: a client's
//     mistake is not the server's error.
//   - A header block whose blank line ends in a bare LF (lines such as
//     "GET / HTTP/1.1\nHost: x\n\n") is refused at once with 400. fasthttp
//     accepts LF-only lines but ends a header block only where it also finds
//     CRLFCRLF, so without the guard such a request waits for the read
//     timeout (30 s) before its 400. The guard refuses rather than accepts
//     (RFC 9112 allows both): a server that ends a header block where a
//     proxy in front of it does not is how requests get smuggled.
//   - A connection that opens with a TLS record (a ClientHello on a plain
//     HTTP port) is closed at once, without an answer a TLS client could
//     not read. Any other byte that cannot start a request line is refused
//     with 400 at once, instead of waiting for a line end that binary data
//     may never contain.
//   - A request line longer than Options.MaxRequestLine is 414, not the 431
//     fasthttp gives when its read buffer fills: the limit a client is told
//     about is the URL's, not the buffer's.
//   - With Options.MaxHeaderBytes, a header block larger than it is 431,
//     whatever room the read buffer leaves after a short request line: a
//     read buffer sized for a long request line does not lend that room to
//     headers.
//   - With Options.LongLines, a listener has two servers: every connection
//     starts on the first, with a read buffer sized for ordinary requests,
//     and moves for good to the second, whose buffer holds the longest
//     request line and which holds it only while a request is read and
//     answered (ReduceMemoryUsage), when it sends a line the first cannot
//     read. A request line that does not end within the read where it
//     starts is held back until it ends (in memory the size of what the
//     client sent), so each line goes whole to the server that can read it
//     and the large buffer is taken only for a line already received. The
//     first server's answer to the read error that lets go of a connection
//     is never written, and its move is not logged.
//   - Every error fasthttp meets while reading a request becomes a Failure:
//     a status (400, 413, 414 or 431), a fixed reason, and the request path
//     when its request line was read, so that each API answers it in its
//     own format (the admin API in JSON on the listener it shares with the
//     Service Management API's XML).
//
// To find where one request ends and the next begins on a keep-alive
// connection, the guard follows the framing fasthttp uses for requests:
// after a header block, Content-Length bytes of body. Where that framing is
// not enough (Transfer-Encoding, Expect: 100-continue, a folded or
// duplicated Content-Length), the guard stops inspecting that connection:
// fasthttp still reads it with its own checks, and only a later bare-LF
// request on it waits for the read timeout again. The guard costs one
// allocation per connection and none per read.
package httpserver
