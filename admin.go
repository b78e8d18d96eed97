package dlock

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// LockInfo describes a lock for operators: Locks returns it.
type LockInfo struct {
	Name    string       `json:"name"`
	ID      int32        `json:"id"`
	Type    string       `json:"type"` // "atomic", "rw" or "fair"
	Refs    int          `json:"refs"` // clients that have the lock open
	Holders []HolderInfo `json:"holders"`
	Waiters []WaiterInfo `json:"waiters"` // blocking requests queued on the server, oldest first
	// MoreWaiters counts queued requests left out of Waiters (at most 100
	// are listed).
	MoreWaiters int `json:"more_waiters,omitempty"`
}

// HolderInfo is one client holding a lock.
type HolderInfo struct {
	Client int32  `json:"client"`
	Mode   string `json:"mode"`            // "exclusive" or "shared"
	Holds  int    `json:"holds,omitempty"` // shared holds of this client (reentrant), when more than one
	// Since is when the server granted the hold; zero when it does not know
	// (a hold reported by a client during recovery).
	Since time.Time `json:"since,omitzero"`
	// LeaseExpiry is when the hold's lease runs out unless extended (atomic
	// and fair locks); zero for rw locks.
	LeaseExpiry time.Time `json:"lease_expiry,omitzero"`
	// Token is the fencing token of the grant, 0 when unknown.
	Token     uint64 `json:"token,omitempty"`
	Remote    string `json:"remote,omitempty"` // address of the client's latest connection
	Connected bool   `json:"connected"`
}

// WaiterInfo is one blocking request queued on a lock.
type WaiterInfo struct {
	Client int32     `json:"client"`
	Mode   string    `json:"mode"`
	Since  time.Time `json:"since"`
	Remote string    `json:"remote,omitempty"`
}

// LockContention is how contended a lock was over the recent window:
// TopLocks returns it.
type LockContention struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Waiters int    `json:"waiters"` // queued now
	// Over the window: requests that had to queue, grants to queued
	// requests (hand-overs), the time the granted requests waited, and the
	// longest queue seen.
	Queued        uint64  `json:"queued"`
	Handovers     uint64  `json:"handovers"`
	WaitSeconds   float64 `json:"wait_seconds"`
	MaxQueue      int     `json:"max_queue"`
	WindowSeconds float64 `json:"window_seconds"`
}

// Admin request and reply bodies (PROTOCOL.md, "Administration").
type (
	adminLocksRequest struct {
		Prefix string `json:"prefix"`
		After  string `json:"after,omitempty"`
		Limit  int    `json:"limit,omitempty"`
	}
	adminLocksReply struct {
		Locks []LockInfo `json:"locks"`
		More  bool       `json:"more"`
	}
	adminTopRequest struct {
		N int `json:"n"`
	}
	adminTopReply struct {
		Locks []LockContention `json:"locks"`
	}
	adminReleaseRequest struct {
		Name string `json:"name"`
	}
	adminReleaseReply struct {
		Released []int32 `json:"released"`
	}
)

// admin sends one admin request with a JSON body and decodes the reply.
func (c *Client) admin(ctx context.Context, t wire.Type, req, rep any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, t, id, c.id, body)
	})
	if err != nil {
		return err
	}
	defer c.m.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return st.Err()
	}
	if err := json.Unmarshal(cl.body, rep); err != nil {
		return fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	return nil
}

// Locks lists the server's locks whose names start with prefix, in name
// order, with their holders and queued waiters. It is an admin request: on
// a server with mutual TLS only the certificates the server names as
// administrators may make it (others get ErrGeneric). The listing is taken a
// page at a time, so it is not one atomic snapshot when there are many locks.
func (c *Client) Locks(ctx context.Context, prefix string) ([]LockInfo, error) {
	var all []LockInfo
	req := adminLocksRequest{Prefix: prefix}
	for {
		var rep adminLocksReply
		if err := c.admin(ctx, wire.TAdminLocks, &req, &rep); err != nil {
			return nil, fmt.Errorf("dlock: list locks: %w", err)
		}
		all = append(all, rep.Locks...)
		if !rep.More || len(rep.Locks) == 0 {
			return all, nil
		}
		req.After = rep.Locks[len(rep.Locks)-1].Name
	}
}

// TopLocks returns up to n of the most contended locks over the server's
// recent window (10 to 20 seconds), the longest total wait first. It is an
// admin request (see Locks).
func (c *Client) TopLocks(ctx context.Context, n int) ([]LockContention, error) {
	var rep adminTopReply
	if err := c.admin(ctx, wire.TAdminTop, &adminTopRequest{N: n}, &rep); err != nil {
		return nil, fmt.Errorf("dlock: top locks: %w", err)
	}
	return rep.Locks, nil
}

// ForceRelease takes the lock called name away from every client holding
// it and returns their ids; whoever waits for it is granted it next. A
// former holder learns it from its next operation on the lock that reaches
// the server: an extend, or the unlock of its last hold, fails with ErrFail
// (Revalidate reports the lock lost). Its own queued requests on that lock
// are answered ErrLockNotGet. It is an admin request (see Locks); ErrInval if
// there is no such lock.
func (c *Client) ForceRelease(ctx context.Context, name string) ([]int32, error) {
	var rep adminReleaseReply
	if err := c.admin(ctx, wire.TAdminRelease, &adminReleaseRequest{Name: name}, &rep); err != nil {
		return nil, fmt.Errorf("dlock: force-release %q: %w", name, err)
	}
	return rep.Released, nil
}
