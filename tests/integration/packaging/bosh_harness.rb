# A tiny stand-in for the BOSH director's template renderer: p(), if_p(...).else, spec, link().
# Usage: ruby bosh_harness.rb TEMPLATE CONTEXT.json   (context: {"properties": {...}, "spec": {...}, "links": {...}})
require "erb"
require "json"
require "ostruct"

class Missing < StandardError; end

class Else
  def initialize(run) = @run = run
  def else
    yield if @run
  end
end

# if_p(*names) { |*values| } .else { }: runs the block when every property is set (BOSH's semantics).
module IfP
  def if_p(*names)
    vals = names.map { |n| props[n] }
    if vals.any?(&:nil?)
      Else.new(true)
    else
      yield(*vals)
      Else.new(false)
    end
  end
end

class Link
  def initialize(h) = @h = h
  def address = @h.fetch("address")
  include IfP
  def props = @h.fetch("properties")
  def p(name) = props.fetch(name)
end

class Ctx
  def initialize(props, spec, links)
    @props, @links = props, links
    @spec = OpenStruct.new(spec)
  end

  attr_reader :spec

  def p(name, *default)
    return @props[name] if @props.key?(name) && !@props[name].nil?
    return default.first unless default.empty?
    raise Missing, "Can't find property '#{name}'"
  end

  include IfP
  def props = @props

  def link(name) = Link.new(@links.fetch(name))

  def render(text) = ERB.new(text, trim_mode: "-").result(binding)
end

ctx = JSON.parse(File.read(ARGV[1]))
print Ctx.new(ctx.fetch("properties"), ctx.fetch("spec"), ctx.fetch("links", {})).render(File.read(ARGV[0]))
