import type * as pulumi from "@pulumi/pulumi";
import { handlerPath } from "./handler-path";

const MACHINE_HANDLERS = handlerPath("machine");

/**
 * The Machine's dynamic provider. Pulumi serializes this object into every Machine's state; it
 * captures only the handler path, and each method loads the implementation when it runs.
 */
export const machineProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: any, news: any) { return require(MACHINE_HANDLERS).check(olds, news); },
  async diff(id: string, olds: any, news: any) { return require(MACHINE_HANDLERS).diff(id, olds, news); },
  async create(inputs: any) { return require(MACHINE_HANDLERS).create(inputs); },
  async update(id: string, olds: any, news: any) { return require(MACHINE_HANDLERS).update(id, olds, news); },
  async read(id: string, props: any) { return require(MACHINE_HANDLERS).read(id, props); },
  async delete(id: string, props: any) { return require(MACHINE_HANDLERS).remove(id, props); },
};
