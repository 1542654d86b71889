import type * as pulumi from "@pulumi/pulumi";
import { handlerPath } from "./handler-path";

const CHANNEL_HANDLERS = handlerPath("channel");

/** The ChannelPin's dynamic provider: captures only the handler path. */
export const channelProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: any, news: any) { return require(CHANNEL_HANDLERS).check(olds, news); },
  async diff(id: string, olds: any, news: any) { return require(CHANNEL_HANDLERS).diff(id, olds, news); },
  async create(inputs: any) { return require(CHANNEL_HANDLERS).create(inputs); },
  async update(id: string, olds: any, news: any) { return require(CHANNEL_HANDLERS).update(id, olds, news); },
  async read(id: string, props: any) { return require(CHANNEL_HANDLERS).read(id, props); },
  async delete(id: string, props: any) { return require(CHANNEL_HANDLERS).remove(id, props); },
};
