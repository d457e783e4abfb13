module github.com/quicport/quicport

go 1.26.8

require github.com/google/go-cmp v0.7.0

require golang.org/x/sys v0.49.0 // indirect
