import type * as pulumi from "@pulumi/pulumi";
import { handlerPath } from "./handler-path";

const KEY_HANDLERS = handlerPath("key");

/** The DeploymentKey's dynamic provider: captures only the handler path (no content, ever). */
export const keyProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: any, news: any) { return require(KEY_HANDLERS).check(olds, news); },
  async diff(id: string, olds: any, news: any) { return require(KEY_HANDLERS).diff(id, olds, news); },
  async create(inputs: any) { return require(KEY_HANDLERS).create(inputs); },
  async update(id: string, olds: any, news: any) { return require(KEY_HANDLERS).update(id, olds, news); },
  async read(id: string, props: any) { return require(KEY_HANDLERS).read(id, props); },
  async delete(id: string, props: any) { return require(KEY_HANDLERS).remove(id, props); },
};
