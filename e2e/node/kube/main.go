// Command e2e-kube is one binary for the node side of the e2e cluster: upstream's
// kubelet, kube-controller-manager and kube-scheduler (k8s.io/kubernetes, the same
// release as e2e/apiserver), chosen by the first argument, like the old hyperkube.
// One binary links the shared packages once: less build time and disk than three.
//
//	e2e-kube kubelet [kubelet flags...]
//	e2e-kube kube-controller-manager [flags...]
//	e2e-kube kube-scheduler [flags...]
//
// Each component behaves exactly as its upstream main (cmd/<component>/*.go).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as in cmd/kube-controller-manager

	"github.com/spf13/cobra"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as in the upstream mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as in the upstream mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // as in the upstream mains
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletpkg "k8s.io/kubernetes/pkg/kubelet"
)

// containerLogsDirEnv moves the kubelet's /var/log/containers (a package variable upstream
// keeps for tests, with no flag) under the node's state directory, so a test node creates
// nothing in the machine's /var/log.
const containerLogsDirEnv = "SPO_E2E_CONTAINER_LOGS_DIR"

var components = map[string]func() *cobra.Command{
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-controller-manager": func() *cobra.Command { return controllermanager.NewControllerManagerCommand() },
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
}

func main() {
	// Called as a component (a symlink named kubelet) or as `e2e-kube kubelet ...`.
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	newCommand, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: %s kubelet|kube-controller-manager|kube-scheduler [flags...]\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}
	if dir := os.Getenv(containerLogsDirEnv); dir != "" {
		kubeletpkg.ContainerLogsDir = dir
	}
	command := newCommand()
	// cobra reads os.Args[1:] itself; the component name is already taken off.
	os.Exit(cli.Run(command))
}
