package scenario

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// rater sets the clients' rate. Each call starts a generation; a setter of
// an older one stops retrying, so the newest rate is the one that stays.
type rater struct{ gen atomic.Int64 }

// rateRetry is how long patiently keeps asking a client that does not answer.
const rateRetry = time.Minute

// setAll sets rate q on each of clients at once; errs[i] is clients[i]'s.
func setAll(clients []*Client, q int) []error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.Admin.SetQPS(q) })
	}
	wg.Wait()
	return errs
}

// once sets every client's rate once, ending any patient setter.
func (r *rater) once(clients []*Client, q int) error {
	r.gen.Add(1)
	return errors.Join(setAll(clients, q)...)
}

// patiently sets every client's rate, retrying those that do not answer:
// on an overloaded box a client's admin listener can take longer than the
// admin timeout, and a client that is slow is not dead (the watch sees
// deaths). It gives up after rateRetry and says so; the phase goes on, and
// its report shows the rate the clients actually sent. Warnings go to out.
func (r *rater) patiently(out io.Writer, clients []*Client, q int) {
	gen := r.gen.Add(1)
	pending := clients
	deadline := time.Now().Add(rateRetry)
	for len(pending) > 0 && r.gen.Load() == gen {
		errs := setAll(pending, q)
		var still []*Client
		for i, err := range errs {
			if err != nil {
				still = append(still, pending[i])
			}
		}
		switch {
		case len(still) > 0 && time.Now().After(deadline):
			fmt.Fprintf(out, "warning: %d clients did not take rate %d within a minute: %v\n", len(still), q, errors.Join(errs...))
			return
		case len(still) > 0:
			fmt.Fprintf(out, "warning: %d clients slow to take rate %d; retrying\n", len(still), q)
		}
		pending = still
	}
}

// Share is node (or client) k's part of a rate over m of them; the parts
// sum to rate.
func Share(rate, k, m int) int {
	return (k+1)*rate/m - k*rate/m
}
