import type * as pulumi from "@pulumi/pulumi";
import { handlerPath } from "./handler-path";

/**
 * A dynamic provider whose methods load the compiled handler module `name` when they run.
 * Pulumi serializes the provider into every resource's state: this way it captures only the
 * handler's path (no implementation, no secret), and runs the installed code.
 */
export function runtimeProvider(name: string): pulumi.dynamic.ResourceProvider {
  const handlers = handlerPath(name);
  return {
    async check(olds: any, news: any) { return require(handlers).check(olds, news); },
    async diff(id: string, olds: any, news: any) { return require(handlers).diff(id, olds, news); },
    async create(inputs: any) { return require(handlers).create(inputs); },
    async update(id: string, olds: any, news: any) { return require(handlers).update(id, olds, news); },
    async read(id: string, props: any) { return require(handlers).read(id, props); },
    async delete(id: string, props: any) { return require(handlers).remove(id, props); },
  };
}
