//go:build !linux

package main

import "errors"

var errPin = errors.New("-pin needs Linux (sched_setaffinity)")

func pinProcess(int) error { return errPin }

func startPinned(func() error, int) error { return errPin }
