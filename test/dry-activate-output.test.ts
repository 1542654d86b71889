import "./helpers/env";
import { describe, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { ROOT } from "./helpers/env";
import { SwitchUnitLines, parseDryActivate, unitChangeLines } from "../provider/host/dry-activate";

const sample = (name: string) => fs.readFileSync(path.join(ROOT, "test/fixtures/dry-activate", name), "utf8");

describe("switch-to-configuration's unit lines (Perl and ng samples)", () => {
  test("ng dry-activate: every list, systemd's re-exec; other lines ignored", () => {
    const d = parseDryActivate(sample("ng-dry-activate.txt"));
    assert.deepEqual(d, {
      wouldStop: ["bars-app.service", "nix-daemon.service", "nix-daemon.socket", "old-cron.service"],
      wouldStart: ["bars-app.service", "nix-daemon.socket"],
      wouldRestart: ["sshd.service", "systemd-journald.service"],
      wouldReload: ["dbus.service", "nginx.service"],
      notRestarting: ["getty@tty1.service", "systemd-journal-flush.service"],
      restartSystemd: true,
    });
    // Stopped and started again = restarted (stopIfChanged); the socket-activated service only stops.
    assert.deepEqual(unitChangeLines(d), [
      "would restart systemd",
      "would stop nix-daemon.service", "would stop old-cron.service",
      "would restart bars-app.service", "would restart nix-daemon.socket", "would restart sshd.service", "would restart systemd-journald.service",
      "would reload dbus.service", "would reload nginx.service",
      "would NOT restart getty@tty1.service", "would NOT restart systemd-journal-flush.service",
    ]);
  });

  test("Perl (later and older order) read the same; the swap line is not a unit", () => {
    const p = parseDryActivate(sample("perl-dry-activate.txt"));
    assert.deepEqual(p.wouldStop, ["Xvfb.service", "bars-app.service", "nix-daemon.service", "nix-daemon.socket", "old-cron.service"]);
    assert.deepEqual(p.wouldStart, ["Xvfb.service", "bars-app.service", "nix-daemon.socket"]);
    assert.equal(p.restartSystemd, true);
    // Sorted as ng sorts (case-insensitively), whatever order the Perl one printed.
    assert.deepEqual(unitChangeLines(p).filter((l) => l.startsWith("would restart ") && l.endsWith(".service")).slice(0, 2),
      ["would restart bars-app.service", "would restart sshd.service"]);
    assert.ok(unitChangeLines(p).includes("would restart Xvfb.service"));
    const old = parseDryActivate(sample("perl-old-dry-activate.txt"));
    assert.deepEqual(old, {
      wouldStop: ["bars-app.service", "nix-daemon.service", "nix-daemon.socket", "old-cron.service"],
      wouldStart: ["bars-app.service", "nix-daemon.socket"],
      wouldRestart: ["sshd.service"],
      wouldReload: ["nginx.service"],
      notRestarting: ["getty@tty1.service"],
      restartSystemd: true,
    });
  });

  test("nothing to do: no lines, no changes", () => {
    const d = parseDryActivate("would activate the configuration...\nwould activate /nix/store/x-nixos-system\n");
    assert.deepEqual(unitChangeLines(d), []);
    assert.equal(d.restartSystemd, false);
  });

  test("a switch's lines: stop+start and restart are restarts, new units started, prefix stripped", () => {
    const w = new SwitchUnitLines("activation: ");
    for (const l of sample("ng-switch.txt").split("\n")) w.line(`activation: ${l}`);
    assert.deepEqual(w.units, {
      restarted: ["sshd.service", "bars-app.service", "nix-daemon.socket"],
      reloaded: ["dbus.service", "nginx.service"],
      started: ["grafana.service"],
      stopped: ["nix-daemon.service", "old-cron.service"],
    });
  });
});
