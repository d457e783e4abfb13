package cli

import "testing"

// cmd/quicport runs itself again with the runtime's monitor kept awake
// for these commands only (procs.KeepMonitorAwake).
func TestCarriesTraffic(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"client", "-s", "vps:39000", "-L", "5432", "-R", "db:5432"}, true},
		{[]string{"--log-level", "debug", "--log-format", "json", "client", "-s", "vps:39000"}, true},
		{[]string{"data-plane", "--supervised"}, true},
		{[]string{"data-plane", "--listen", "0.0.0.0:39000"}, true},
		{[]string{"server", "--listen", "0.0.0.0:39000"}, false},
		{[]string{"ssh-proxy", "-s", "vps:39000", "-R", "db:22"}, false},
		{[]string{"version"}, false},
		{[]string{"no-such-command"}, false},
		{nil, false},
	} {
		if got := CarriesTraffic(tc.args); got != tc.want {
			t.Errorf("CarriesTraffic(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
