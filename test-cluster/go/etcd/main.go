// Command etcd is etcd's server, built from the released go.etcd.io/etcd/server/v3 module
// (the upstream etcd binary lives in a module of its own that is not published for reuse).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
