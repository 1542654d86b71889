// The repo's stack program is the package's, as in any project (see provider/stack.ts).
export * from "pulumi-nixos/stack";
