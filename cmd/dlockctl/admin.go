package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dlock-io/dlock"
)

// connFlags are the flags of the commands that talk to a server.
type connFlags struct {
	addr                   *string
	tlsCA, tlsCert, tlsKey *string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	return &connFlags{
		addr:    addrFlag(fs),
		tlsCA:   fs.String("tls-ca", os.Getenv("DLOCK_TLS_CA"), "PEM `file` of the CA the server's certificate chains to (turns on TLS; default $DLOCK_TLS_CA)"),
		tlsCert: fs.String("tls-cert", os.Getenv("DLOCK_TLS_CERT"), "PEM client certificate `file` (default $DLOCK_TLS_CERT)"),
		tlsKey:  fs.String("tls-key", os.Getenv("DLOCK_TLS_KEY"), "PEM private key `file` of -tls-cert; an encrypted key's password comes from $DLOCK_TLS_KEY_PASSWORD"),
	}
}

// dial connects as the flags say.
func (f *connFlags) dial(ctx context.Context) (*dlock.Client, error) {
	var cfg dlock.Config
	if *f.tlsCA != "" || *f.tlsCert != "" || *f.tlsKey != "" {
		cfg.TLS = &dlock.TLSOptions{CAFile: *f.tlsCA, CertFile: *f.tlsCert, KeyFile: *f.tlsKey}
		if _, ok := os.LookupEnv("DLOCK_TLS_KEY_PASSWORD"); ok {
			cfg.TLS.KeyPassword = func() ([]byte, error) { return []byte(os.Getenv("DLOCK_TLS_KEY_PASSWORD")), nil }
		}
	}
	return dlock.Dial(ctx, *f.addr, &cfg)
}

// runLocks is "dlockctl locks": list locks with holders and waiters.
func runLocks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("locks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: dlockctl locks [-prefix P] [-json] [flags]\n\nLists the server's locks whose names start with -prefix, with their holders\n(client, mode, since, lease expiry, fencing token) and queued waiters.\nOn a server with mutual TLS it needs an administrator's certificate.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cf := addConnFlags(fs)
	prefix := fs.String("prefix", "", "list only locks whose names start with this")
	asJSON := fs.Bool("json", false, "print a JSON array of objects (name, id, type, refs, holders, waiters)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Shutdown(ctx)
	locks, err := c.Locks(ctx, *prefix)
	if err != nil {
		return err
	}
	if *asJSON {
		if locks == nil {
			locks = []dlock.LockInfo{}
		}
		return writeJSON(stdout, locks)
	}
	if len(locks) == 0 {
		fmt.Fprintln(stdout, "no locks")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tHOLDER\tMODE\tSINCE\tLEASE LEFT\tTOKEN\tWAITERS")
	now := time.Now()
	for _, l := range locks {
		if len(l.Holders) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t\t\t\t\t%d\n", l.Name, l.Type, len(l.Waiters)+l.MoreWaiters)
		}
		for i, h := range l.Holders {
			name, typ, waiters := l.Name, l.Type, fmt.Sprint(len(l.Waiters)+l.MoreWaiters)
			if i > 0 {
				name, typ, waiters = "", "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", name, typ, h.Client, h.Mode, ago(now, h.Since), left(now, h.LeaseExpiry), h.Token, waiters)
		}
	}
	tw.Flush()
	for _, l := range locks {
		for _, w := range l.Waiters {
			fmt.Fprintf(stdout, "waiting on %s: client %d (%s) for %s\n", l.Name, w.Client, w.Mode, ago(now, w.Since))
		}
	}
	return nil
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return now.Sub(t).Round(time.Millisecond).String()
}

func left(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(now).Round(time.Second).String()
}

// runTop is "dlockctl top": a refreshing view of the most contended locks.
func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: dlockctl top [-n N] [-interval D] [-count K] [flags]\n\nShows the most contended locks over the server's recent window (10 to 20 s):\nrequests queued, hand-overs, total and average wait, queue depth. It refreshes\nevery -interval until interrupted (or -count times).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cf := addConnFlags(fs)
	n := fs.Int("n", 10, "show this many locks")
	interval := fs.Duration("interval", 2*time.Second, "refresh every")
	count := fs.Int("count", 0, "stop after this many refreshes (0: until interrupted)")
	asJSON := fs.Bool("json", false, "print each refresh as a JSON array")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := cf.dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Shutdown(sctx)
		cancel()
	}()
	tty := isTerminal(stdout)
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*interval):
			}
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		top, err := c.TopLocks(qctx, *n)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if *asJSON {
			if top == nil {
				top = []dlock.LockContention{}
			}
			if err := writeJSON(stdout, top); err != nil {
				return err
			}
			continue
		}
		if tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		}
		fmt.Fprintf(stdout, "%s  %s  most contended locks\n", time.Now().Format(time.TimeOnly), *cf.addr)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTYPE\tWAITING\tMAX QUEUE\tQUEUED\tHAND-OVERS\tWAIT TOTAL\tAVG WAIT\tWINDOW")
		for _, l := range top {
			avg := "-"
			if l.Handovers > 0 {
				avg = time.Duration(l.WaitSeconds / float64(l.Handovers) * 1e9).Round(time.Microsecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", l.Name, l.Type, l.Waiters, l.MaxQueue, l.Queued, l.Handovers,
				time.Duration(l.WaitSeconds*1e9).Round(time.Microsecond), avg, time.Duration(l.WindowSeconds*1e9).Round(time.Second))
		}
		tw.Flush()
		if len(top) == 0 {
			fmt.Fprintln(stdout, "no contention")
		}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runRelease is "dlockctl release -force NAME".
func runRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: dlockctl release -force [flags] NAME\n\nTakes lock NAME away from every client holding it; the next waiter is granted\nit. A former holder learns it on its next operation on the lock (extend and\nunlock fail with DLOCK_FAIL); \"dlockctl lock\" then stops its command. The\nserver counts and logs it. On a server with mutual TLS it needs an\nadministrator's certificate.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cf := addConnFlags(fs)
	force := fs.Bool("force", false, "required: confirms that the holders lose the lock")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError("release: need one lock name")
	}
	if !*force {
		return usageError("release: only a forced release exists (-force): a holder releases its lock by unlocking it")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Shutdown(ctx)
	ids, err := c.ForceRelease(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		fmt.Fprintf(stdout, "%s was not held\n", fs.Arg(0))
		return nil
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	fmt.Fprintf(stdout, "%s released from client %s\n", fs.Arg(0), strings.Join(s, ", "))
	return nil
}
