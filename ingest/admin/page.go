package admin

import (
	"strconv"
)

// Paging of list endpoints: `page` counts from 1, `per_page` is 1 to
// MaxPerPage (default DefaultPerPage). An answer holds the page's items
// under the list's name, with page, per_page and total (the number of
// items in the whole list) beside them.
const (
	DefaultPerPage = 500
	MaxPerPage     = 500
	// maxPage bounds page so that (page-1)*per_page cannot overflow.
	maxPage = 1 << 40
)

// paging reads and checks the request's page and per_page.
func paging(r *request) (page, perPage int, err error) {
	page, perPage = 1, DefaultPerPage
	args := r.ctx.QueryArgs()
	for _, q := range []struct {
		name string
		into *int
		max  int
	}{{"page", &page, maxPage}, {"per_page", &perPage, MaxPerPage}} {
		v := args.Peek(q.name)
		if v == nil {
			continue
		}
		n, perr := strconv.Atoi(string(v))
		if perr != nil || n < 1 || n > q.max || len(v) > 20 {
			return 0, 0, errf(400, "bad_request", q.name+" must be an integer from 1 to "+strconv.Itoa(q.max))
		}
		*q.into = n
	}
	return page, perPage, nil
}

// window returns the bounds in a list of n items of the request's page.
func window(page, perPage, n int) (from, to int) {
	from = min((page-1)*perPage, n)
	return from, min(from+perPage, n)
}

// pageOf answers one page of list, under name.
func pageOf[T any](r *request, name string, list []T) (any, error) {
	page, perPage, err := paging(r)
	if err != nil {
		return nil, err
	}
	from, to := window(page, perPage, len(list))
	return pageBody(name, nonNil(list[from:to]), page, perPage, len(list)), nil
}

func pageBody(name string, items any, page, perPage, total int) map[string]any {
	return map[string]any{name: items, "page": page, "per_page": perPage, "total": total}
}
