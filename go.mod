module github.com/dlock-io/dlock

go 1.25
